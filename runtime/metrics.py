"""The metrics device: counters, gauges and histograms, exported in Prometheus text format.

``Registry`` implements the ``Metrics`` device.  A metric without label names is
itself the thing to ``inc()``/``set()``/``observe()``; with label names it is a
family whose ``labels(*values)`` returns the child for those values, always the
same object, so a hot path looks it up once and keeps it.

Rules:

1. An update is one float add (two for a histogram, plus a bisect).  No locks: a
   process is single-threaded and asyncio code does not interleave inside an add.
2. Rendering (``render()``, text exposition format 0.0.4) runs the collectors,
   then walks metrics in registration order and children in creation order.
   Values that are whole numbers print without ``.0`` (``3``, ``le="1"``), others
   with ``repr`` (``0.25``), infinities as ``+Inf``/``-Inf``, not-a-number as ``NaN``.
3. Every family has a bound on its children: past it, new label sets share one
   overflow child whose label values are all ``"_overflow"``, so a label fed from
   peer data cannot grow memory without limit and the updates still count.

The HTTP endpoint that serves ``render()`` to scrapers is ``runtime.metrics_http``.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, overload

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "MAX_SERIES_PER_FAMILY",
    "OVERFLOW_LABEL_VALUE",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "Registry",
    "add_process_metrics",
    "format_value",
]

#: The Prometheus client libraries' default buckets (seconds: 5 ms .. 10 s).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
#: Children per labelled family.  Prometheus' naming guide asks for label sets in the
#: tens; a thousand means a label is fed from unbounded data (addresses, names).
MAX_SERIES_PER_FAMILY = 1000
#: The label value of the child that absorbs label sets past the bound.
OVERFLOW_LABEL_VALUE = "_overflow"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# https://prometheus.io/docs/concepts/data_model/#metric-names-and-labels
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})
_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


def format_value(value: float) -> str:
    """A sample value as the exposition format writes it."""
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


# --------------------------------------------------------------------- metric objects


class Counter:
    """A value that only goes up (until the process restarts)."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter cannot decrease (inc by {amount}); use a gauge")
        self._value += amount

    def set_total(self, total: float) -> None:
        """Mirror a counter kept elsewhere (the kernel's CPU time, a library's
        total).  For collectors; code that counts events uses ``inc``."""
        self._value = float(total)

    @property
    def value(self) -> float:
        return self._value

    def labels(self, *values: object) -> Counter:
        """A metric without label names is its own only child: ``labels()`` is itself."""
        if values:
            raise ValueError(f"this counter has no labels; got {len(values)} label values")
        return self


class Gauge:
    """A value that goes up and down."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = float(value)

    def inc(self, amount: float = 1) -> None:
        self._value += amount

    def dec(self, amount: float = 1) -> None:
        self._value -= amount

    @property
    def value(self) -> float:
        return self._value

    def labels(self, *values: object) -> Gauge:
        if values:
            raise ValueError(f"this gauge has no labels; got {len(values)} label values")
        return self


class Histogram:
    """Observations counted into buckets by upper bound (``le``), with their sum."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds  # ends with +Inf, so every value has a bucket
        self._counts = [0] * len(bounds)  # per bucket, made cumulative when rendered
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left finds the first bound >= value, i.e. the bucket "le" it falls in.
        # NaN compares false to every bound; it belongs in +Inf (as in the Go client).
        index = bisect_left(self._bounds, value) if value == value else len(self._bounds) - 1
        self._counts[index] += 1
        self._sum += value

    @property
    def sum(self) -> float:
        return self._sum

    @property
    def count(self) -> int:
        return sum(self._counts)

    def buckets(self) -> list[tuple[float, int]]:
        """``(upper bound, cumulative count)`` pairs, ending with ``(inf, count)``."""
        total = 0
        out = []
        for bound, n in zip(self._bounds, self._counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def labels(self, *values: object) -> Histogram:
        if values:
            raise ValueError(f"this histogram has no labels; got {len(values)} label values")
        return self


M = TypeVar("M", Counter, Gauge, Histogram)
M_co = TypeVar("M_co", covariant=True)


class Family(Protocol[M_co]):
    """A metric with label names: ``labels(*values)`` (one value per name, in order,
    converted with ``str``) returns the child for those values."""

    def labels(self, *values: object) -> M_co: ...


@dataclass(eq=False, slots=True)
class _Entry(Generic[M]):
    """What the registry knows of one metric name, and what rendering walks."""

    name: str
    help: str
    kind: str
    labelnames: tuple[str, ...]
    bounds: tuple[float, ...]
    new_child: Callable[[], M]
    #: label values -> (rendered label pairs without braces, child), in creation order
    series: dict[tuple[str, ...], tuple[str, M]] = field(default_factory=dict)


class _LabelledFamily(Generic[M]):
    __slots__ = ("_cache", "_entry", "_max_series")

    _entry: _Entry[M]
    _max_series: int
    _cache: dict[tuple[object, ...], M]

    def __init__(self, entry: _Entry[M], max_series: int) -> None:
        self._entry = entry
        self._max_series = max_series
        # The values as passed (ints, enums...) -> child, so the common lookup does not
        # convert them again.  Bounded at twice the series bound: a few spellings of the
        # same values are fine, objects that all print alike are not remembered.
        self._cache = {}

    def __repr__(self) -> str:
        return f"<{self._entry.kind} family {self._entry.name} {self._entry.labelnames}>"

    def labels(self, *values: object) -> M:
        try:
            child = self._cache.get(values)
        except TypeError:  # unhashable values: still usable, just not cached as given
            child = None
        if child is None:
            child = self._child(values)
        return child

    def _child(self, values: tuple[object, ...]) -> M:
        entry = self._entry
        if len(values) != len(entry.labelnames):
            raise ValueError(
                f"{entry.name} has labels {entry.labelnames}; got {len(values)} values {values!r}"
            )
        key = tuple(str(v) for v in values)
        found = entry.series.get(key)
        if found is None:
            if len(entry.series) >= self._max_series:
                # Past the bound: everything new shares the overflow child, and the
                # spelling is not cached so the cache stays bounded too.
                return self._overflow()
            found = _add_series(entry, key)
        child = found[1]
        if len(self._cache) < 2 * self._max_series:
            try:
                self._cache[values] = child
            except TypeError:
                pass
        return child

    def _overflow(self) -> M:
        entry = self._entry
        key = (OVERFLOW_LABEL_VALUE,) * len(entry.labelnames)
        found = entry.series.get(key)
        if found is None:
            found = _add_series(entry, key)
        return found[1]


def _add_series(entry: _Entry[M], key: tuple[str, ...]) -> tuple[str, M]:
    named = zip(entry.labelnames, key, strict=True)
    pairs = ",".join(f'{label}="{value.translate(_LABEL_ESCAPES)}"' for label, value in named)
    found = (pairs, entry.new_child())
    entry.series[key] = found
    return found


# --------------------------------------------------------------------- registry


Collector = Callable[[], None]


class Registry:
    """The ``Metrics`` device: registered metrics and the collectors that refresh them."""

    def __init__(self, *, max_series: int = MAX_SERIES_PER_FAMILY) -> None:
        self._entries: dict[str, _Entry[Counter] | _Entry[Gauge] | _Entry[Histogram]] = {}
        self._public: dict[str, object] = {}
        #: every sample name a metric writes (a histogram writes three) -> its metric
        self._sample_names: dict[str, str] = {}
        self._collectors: list[Collector] = []
        self._collector_errors = 0
        self._max_series = max_series

    @overload
    def counter(self, name: str, help: str, labels: tuple[()] = ()) -> Counter: ...

    @overload
    def counter(self, name: str, help: str, labels: Sequence[str] = ...) -> Family[Counter]: ...

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter | Family[Counter]:
        """A counter, or with ``labels`` a family of them."""
        return self._register(_Entry(name, help, "counter", tuple(labels), (), Counter))

    @overload
    def gauge(self, name: str, help: str, labels: tuple[()] = ()) -> Gauge: ...

    @overload
    def gauge(self, name: str, help: str, labels: Sequence[str] = ...) -> Family[Gauge]: ...

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge | Family[Gauge]:
        return self._register(_Entry(name, help, "gauge", tuple(labels), (), Gauge))

    @overload
    def histogram(
        self, name: str, help: str, labels: tuple[()] = (), buckets: Sequence[float] = ()
    ) -> Histogram: ...

    @overload
    def histogram(
        self, name: str, help: str, labels: Sequence[str] = ..., buckets: Sequence[float] = ()
    ) -> Family[Histogram]: ...

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = ()
    ) -> Histogram | Family[Histogram]:
        """A histogram with upper bounds ``buckets`` (default ``DEFAULT_BUCKETS``;
        ``+Inf`` is always added)."""
        labelnames = tuple(labels)
        if "le" in labelnames:
            raise ValueError(f"histogram {name}: 'le' is reserved for bucket bounds")
        bounds = _check_buckets(name, buckets or DEFAULT_BUCKETS)
        return self._register(_Entry(name, help, "histogram", labelnames, bounds, lambda: Histogram(bounds)))

    def _register(self, entry: _Entry[M]) -> M | Family[M]:
        name = entry.name
        existing = self._entries.get(name)
        if existing is not None:
            if _shape(existing) != _shape(entry):
                raise ValueError(
                    f"metric {name} is already registered as {_shape(existing)}; "
                    f"cannot register it again as {_shape(entry)}"
                )
            return self._public[name]  # type: ignore[return-value]
        if not _METRIC_NAME.match(name):
            raise ValueError(f"bad metric name {name!r}: expected [a-zA-Z_:][a-zA-Z0-9_:]*")
        for label in entry.labelnames:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(
                    f"metric {name}: bad label name {label!r}: "
                    "expected [a-zA-Z_][a-zA-Z0-9_]*, not starting with '__'"
                )
        if len(set(entry.labelnames)) != len(entry.labelnames):
            raise ValueError(f"metric {name}: duplicate label names in {entry.labelnames}")
        samples = [name]
        if entry.kind == "histogram":
            samples += (f"{name}_bucket", f"{name}_sum", f"{name}_count")
        for sample in samples:
            owner = self._sample_names.get(sample)
            if owner is not None:
                raise ValueError(f"metric {name} would write samples named {sample}, as metric {owner} does")
        for sample in samples:
            self._sample_names[sample] = name
        public: M | Family[M]
        if entry.labelnames:
            public = _LabelledFamily(entry, self._max_series)
        else:
            public = _add_series(entry, ())[1]
        self._entries[name] = entry
        self._public[name] = public
        return public

    # ----------------------------------------------------------------- collectors

    def add_collector(self, collector: Collector) -> None:
        """Call ``collector()`` at each render, before anything is written, to refresh
        gauges from elsewhere (memory in use, open connections)."""
        self._collectors.append(collector)

    def remove_collector(self, collector: Collector) -> None:
        self._collectors.remove(collector)

    @property
    def collector_errors(self) -> int:
        """Collector calls that raised.  A failing collector leaves its metrics stale
        rather than failing the scrape of all the others."""
        return self._collector_errors

    # ----------------------------------------------------------------- exposition

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        for collector in list(self._collectors):
            try:
                collector()
            except Exception:
                self._collector_errors += 1
        out: list[str] = []
        for entry in self._entries.values():
            name = entry.name
            out.append(f"# HELP {name} {entry.help.translate(_HELP_ESCAPES)}\n# TYPE {name} {entry.kind}\n")
            if entry.kind == "histogram":
                le_texts = [format_value(bound) for bound in entry.bounds]
                for pairs, child in entry.series.values():
                    assert isinstance(child, Histogram)
                    head = f'{name}_bucket{{{pairs},le="' if pairs else f'{name}_bucket{{le="'
                    total = 0
                    for le_text, n in zip(le_texts, child._counts, strict=True):
                        total += n
                        out.append(f'{head}{le_text}"}} {total}\n')
                    braces = f"{{{pairs}}}" if pairs else ""
                    out.append(f"{name}_sum{braces} {format_value(child._sum)}\n")
                    out.append(f"{name}_count{braces} {total}\n")
            else:
                for pairs, child in entry.series.values():
                    assert not isinstance(child, Histogram)
                    braces = f"{{{pairs}}}" if pairs else ""
                    out.append(f"{name}{braces} {format_value(child._value)}\n")
        return "".join(out)


def _shape(entry: _Entry[Counter] | _Entry[Gauge] | _Entry[Histogram]) -> str:
    text = f"a {entry.kind} with labels {entry.labelnames}"
    if entry.kind == "histogram":
        text += f" and buckets {entry.bounds[:-1]}"
    return text


def _check_buckets(name: str, buckets: Sequence[float]) -> tuple[float, ...]:
    bounds = [float(b) for b in buckets]
    if bounds and bounds[-1] == math.inf:
        bounds.pop()
    if not bounds:
        raise ValueError(f"histogram {name}: needs at least one finite bucket bound")
    if any(b != b or math.isinf(b) for b in bounds):
        raise ValueError(f"histogram {name}: bucket bounds must be finite numbers, got {tuple(buckets)}")
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"histogram {name}: bucket bounds must increase strictly, got {tuple(buckets)}")
    return (*bounds, math.inf)


# --------------------------------------------------------------------- process metrics


def add_process_metrics(registry: Registry, *, proc: str = "/proc") -> bool:
    """Register the standard ``process_*`` metrics, refreshed from ``/proc`` at each
    render.  Returns ``False`` (and registers nothing) where ``/proc`` cannot be read.

    Reading ``/proc`` is the runtime's business; appliances never do it.
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        start = _process_start_time(proc, ticks)
        _process_sample(proc, ticks)
    except (OSError, ValueError, IndexError):
        return False
    # Names and help texts as in the Prometheus client libraries, so dashboards apply.
    rss = registry.gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
    cpu = registry.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
    fds = registry.gauge("process_open_fds", "Number of open file descriptors.")
    registry.gauge(
        "process_start_time_seconds", "Start time of the process since unix epoch in seconds."
    ).set(start)

    def collect() -> None:
        try:
            sample = _process_sample(proc, ticks)
        except (OSError, ValueError, IndexError):
            return  # /proc went away (unmounted in an image): keep the last values
        cpu.set_total(sample.cpu_seconds)
        rss.set(sample.rss_bytes)
        fds.set(sample.open_fds)

    collect()
    registry.add_collector(collect)
    return True


@dataclass(frozen=True, slots=True)
class _ProcessSample:
    cpu_seconds: float
    rss_bytes: int
    open_fds: int


def _stat_fields(proc: str) -> list[str]:
    """Fields 3.. of /proc/self/stat (proc(5)); the command name (field 2) is in
    parentheses and may itself contain spaces and parentheses, so split after the last ')'."""
    with open(f"{proc}/self/stat", encoding="ascii", errors="replace") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def _process_start_time(proc: str, ticks: int) -> float:
    # field 22, starttime: clock ticks after boot; /proc/stat's btime is boot time.
    started = int(_stat_fields(proc)[22 - 3]) / ticks
    with open(f"{proc}/stat", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1]) + started
    raise ValueError("no btime in /proc/stat")


def _process_sample(proc: str, ticks: int) -> _ProcessSample:
    fields = _stat_fields(proc)
    # fields 14 and 15: utime and stime in clock ticks
    cpu = (int(fields[14 - 3]) + int(fields[15 - 3])) / ticks
    rss = 0
    with open(f"{proc}/self/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
                break
    fds = len(os.listdir(f"{proc}/self/fd"))
    return _ProcessSample(cpu, rss, fds)
