"""Conformance suite for the ``Metrics`` device, and a reader of the exposition format.

Subclass ``MetricsConformance`` and provide a ``metrics`` fixture returning a
fresh, empty ``Metrics``.  The suite checks counter, gauge and histogram
semantics by reading ``render()`` back with ``parse_exposition``, a strict
reader of the Prometheus text format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/), so what is
checked is what a scraper would see.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pytest

from ...devices import Metrics

__all__ = ["MetricFamily", "MetricsConformance", "Sample", "parse_exposition"]


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class MetricFamily:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def value(self, name: str | None = None, **labels: str) -> float:
        """The value of the one sample called ``name`` (default: the family's name)
        with exactly these labels."""
        wanted = name or self.name
        found = [s.value for s in self.samples if s.name == wanted and s.labels == labels]
        if len(found) != 1:
            raise KeyError(f"{len(found)} samples {wanted}{labels} in {self.samples}")
        return found[0]


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_HELP_LINE = re.compile(rf"# HELP ({_NAME}) ?(.*)\Z")
_TYPE_LINE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)\Z")
_SAMPLE_HEAD = re.compile(rf"({_NAME})")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_VALUE = re.compile(r" (\S+)(?: (-?\d+))?\Z")
_TYPES_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def _unescape(text: str, quotes: bool) -> str:
    out = []
    i = 0
    while i < len(text):
        nxt = text[i + 1 : i + 2]
        if text[i] == "\\" and nxt and (nxt in "\\n" or (quotes and nxt == '"')):
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _float(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"bad sample value {text!r}")
    return float(text)


def parse_exposition(text: str) -> dict[str, MetricFamily]:
    """Read text format 0.0.4 strictly: every line ends in ``\\n``, HELP and TYPE
    come at most once per family and before its samples, a family's samples are
    contiguous, no series repeats, histograms are cumulative and end at ``+Inf``
    equal to ``_count``.  Raises ``ValueError`` on any departure."""
    if text and not text.endswith("\n"):
        raise ValueError("exposition must end with a newline")
    families: dict[str, MetricFamily] = {}
    finished: set[str] = set()
    current: MetricFamily | None = None
    seen_series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def family_for(sample_name: str) -> MetricFamily:
        for fam in families.values():
            if sample_name == fam.name or any(
                sample_name == fam.name + suffix for suffix in _TYPES_SUFFIXES.get(fam.type, ())
            ):
                return fam
        return families.setdefault(sample_name, MetricFamily(sample_name))

    def switch_to(fam: MetricFamily) -> None:
        nonlocal current
        if current is not fam:
            if fam.name in finished:
                raise ValueError(f"samples of {fam.name} are not contiguous")
            if current is not None:
                finished.add(current.name)
            current = fam

    for number, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {number}: {line!r}"
        if line.startswith("#"):
            if match := _HELP_LINE.match(line):
                fam = families.setdefault(match.group(1), MetricFamily(match.group(1)))
                if fam.help is not None:
                    raise ValueError(f"second HELP at {where}")
                fam.help = _unescape(match.group(2), quotes=False)
                switch_to(fam)
            elif match := _TYPE_LINE.match(line):
                fam = families.setdefault(match.group(1), MetricFamily(match.group(1)))
                if fam.samples or fam.type != "untyped":
                    raise ValueError(f"TYPE after samples or a second TYPE at {where}")
                fam.type = match.group(2)
                switch_to(fam)
            elif line.startswith(("# HELP", "# TYPE")):
                raise ValueError(f"malformed {where}")
            continue
        if not line.strip():
            continue
        head = _SAMPLE_HEAD.match(line)
        if head is None:
            raise ValueError(f"no metric name at {where}")
        name, at = head.group(1), head.end()
        labels: dict[str, str] = {}
        if line[at : at + 1] == "{":
            at += 1
            while line[at : at + 1] != "}":
                label = _LABEL.match(line, at)
                if label is None:
                    raise ValueError(f"bad label at {at} in {where}")
                if label.group(1) in labels:
                    raise ValueError(f"repeated label {label.group(1)} at {where}")
                labels[label.group(1)] = _unescape(label.group(2), quotes=True)
                at = label.end()
                if line[at : at + 1] == ",":
                    at += 1
            at += 1
        value = _VALUE.match(line, at)
        if value is None:
            raise ValueError(f"bad value at {where}")
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ValueError(f"repeated series at {where}")
        seen_series.add(key)
        fam = family_for(name)
        switch_to(fam)
        fam.samples.append(Sample(name, labels, _float(value.group(1))))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam: MetricFamily) -> None:
    groups: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for sample in fam.samples:
        rest = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        groups.setdefault(rest, []).append(sample)
    for rest, samples in groups.items():
        series = f"{fam.name}{dict(rest)}"
        buckets = [(s.labels["le"], s.value) for s in samples if s.name == fam.name + "_bucket"]
        counts = [s.value for s in samples if s.name == fam.name + "_count"]
        if not buckets or buckets[-1][0] != "+Inf" or len(counts) != 1:
            raise ValueError(f"histogram {series} lacks a +Inf bucket or its _count")
        bounds = [_float(le) for le, _ in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {series} buckets out of order: {bounds}")
        values = [v for _, v in buckets]
        if values != sorted(values):
            raise ValueError(f"histogram {series} buckets are not cumulative: {values}")
        if values[-1] != counts[0]:
            raise ValueError(f"histogram {series}: +Inf bucket {values[-1]} != _count {counts[0]}")


# --------------------------------------------------------------------- the suite


class MetricsConformance:
    """Behaviour every ``Metrics`` implementation shares."""

    def read(self, metrics: Metrics) -> dict[str, MetricFamily]:
        return parse_exposition(metrics.render())

    def test_is_metrics(self, metrics: Metrics) -> None:
        assert isinstance(metrics, Metrics)

    def test_counter_counts_up(self, metrics: Metrics) -> None:
        counter = metrics.counter("requests_total", "Requests handled.")
        assert self.read(metrics)["requests_total"].value() == 0
        counter.inc()
        counter.inc(2.5)
        fam = self.read(metrics)["requests_total"]
        assert (fam.type, fam.help, fam.value()) == ("counter", "Requests handled.", 3.5)

    def test_counter_refuses_to_go_down(self, metrics: Metrics) -> None:
        counter = metrics.counter("requests_total", "Requests handled.")
        with pytest.raises(ValueError):
            counter.inc(-1)
        assert self.read(metrics)["requests_total"].value() == 0

    def test_gauge_goes_both_ways(self, metrics: Metrics) -> None:
        gauge = metrics.gauge("connections", "Open connections.")
        gauge.inc()
        gauge.inc(4)
        gauge.dec(2)
        assert self.read(metrics)["connections"].value() == 3
        gauge.set(-1.5)
        fam = self.read(metrics)["connections"]
        assert (fam.type, fam.value()) == ("gauge", -1.5)

    def test_labelled_children_are_cached_and_separate(self, metrics: Metrics) -> None:
        family = metrics.counter("dns_queries_total", "Queries received.", labels=("qtype", "rcode"))
        child = family.labels("A", "NOERROR")
        assert family.labels("A", "NOERROR") is child
        child.inc()
        child.inc()
        family.labels("AAAA", "NXDOMAIN").inc()
        fam = self.read(metrics)["dns_queries_total"]
        assert fam.value(qtype="A", rcode="NOERROR") == 2
        assert fam.value(qtype="AAAA", rcode="NXDOMAIN") == 1
        assert len(fam.samples) == 2

    def test_label_value_count_must_match(self, metrics: Metrics) -> None:
        family = metrics.counter("x_total", "X.", labels=("a", "b"))
        with pytest.raises(ValueError):
            family.labels("only one")
        with pytest.raises(ValueError):
            family.labels("1", "2", "3")

    @pytest.mark.parametrize("value", ["", "plain", 'quo"te', "back\\slash", "new\nline", 'all \\"\n', "é"])
    def test_label_values_round_trip(self, metrics: Metrics, value: str) -> None:
        metrics.gauge("g", "G.", labels=("v",)).labels(value).set(1)
        assert self.read(metrics)["g"].samples[0].labels == {"v": value}

    def test_help_round_trips(self, metrics: Metrics) -> None:
        text = 'Line one\nline "two" with \\ backslash.'
        metrics.counter("c_total", text)
        assert self.read(metrics)["c_total"].help == text

    def test_histogram_default_buckets(self, metrics: Metrics) -> None:
        histogram = metrics.histogram("latency_seconds", "Latency.")
        for value in (0.001, 0.02, 0.02, 3.0, 11.0):
            histogram.observe(value)
        fam = self.read(metrics)["latency_seconds"]
        assert fam.type == "histogram"
        buckets = {s.labels["le"]: s.value for s in fam.samples if s.name == "latency_seconds_bucket"}
        bounds = [_float(le) for le in buckets]
        assert bounds[-1] == math.inf
        assert bounds[0] == pytest.approx(0.005) and bounds[-2] == pytest.approx(10)
        assert fam.value("latency_seconds_count") == 5
        assert fam.value("latency_seconds_sum") == pytest.approx(14.041)
        cumulative = dict(zip(bounds, buckets.values(), strict=True))
        picked = [cumulative[bound] for bound in (0.005, 0.025, 2.5, 5.0, math.inf)]
        assert picked == [1, 3, 3, 4, 5]

    def test_histogram_bounds_are_inclusive(self, metrics: Metrics) -> None:
        histogram = metrics.histogram("size_bytes", "Sizes.", buckets=(10, 100))
        for value in (10, 10.5, 100, 1000):
            histogram.observe(value)
        fam = self.read(metrics)["size_bytes"]
        values = [s.value for s in fam.samples if s.name == "size_bytes_bucket"]
        assert values == [1, 3, 4]
        assert fam.value("size_bytes_sum") == 1120.5

    def test_labelled_histogram(self, metrics: Metrics) -> None:
        family = metrics.histogram("op_seconds", "Ops.", labels=("op",), buckets=(1,))
        family.labels("read").observe(0.5)
        family.labels("write").observe(2)
        family.labels("write").observe(3)
        fam = self.read(metrics)["op_seconds"]
        assert fam.value("op_seconds_bucket", op="read", le="+Inf") == 1
        assert fam.value("op_seconds_bucket", op="write", le="+Inf") == 2
        assert fam.value("op_seconds_count", op="write") == 2
        assert fam.value("op_seconds_sum", op="write") == 5

    def test_same_registration_returns_the_same_metric(self, metrics: Metrics) -> None:
        first = metrics.counter("c_total", "C.", labels=("a",))
        assert metrics.counter("c_total", "C.", labels=("a",)) is first
        gauge = metrics.gauge("g", "G.")
        assert metrics.gauge("g", "G.") is gauge
        histogram = metrics.histogram("h", "H.", buckets=(1, 2))
        assert metrics.histogram("h", "H.", buckets=(1, 2)) is histogram

    def test_clashing_registration_is_refused(self, metrics: Metrics) -> None:
        metrics.counter("c_total", "C.", labels=("a",))
        metrics.histogram("h", "H.", buckets=(1, 2))
        with pytest.raises(ValueError):
            metrics.gauge("c_total", "C.", labels=("a",))
        with pytest.raises(ValueError):
            metrics.counter("c_total", "C.", labels=("b",))
        with pytest.raises(ValueError):
            metrics.counter("c_total", "C.")
        with pytest.raises(ValueError):
            metrics.histogram("h", "H.", buckets=(1, 3))

    @pytest.mark.parametrize("name", ["", "1st", "has-dash", "has space", "dots.no", "é"])
    def test_bad_metric_names_are_refused(self, metrics: Metrics, name: str) -> None:
        with pytest.raises(ValueError):
            metrics.counter(name, "Bad.")

    @pytest.mark.parametrize("label", ["", "1st", "has-dash", "__reserved", "colon:no"])
    def test_bad_label_names_are_refused(self, metrics: Metrics, label: str) -> None:
        with pytest.raises(ValueError):
            metrics.counter("c_total", "C.", labels=(label,))

    def test_render_keeps_registration_order(self, metrics: Metrics) -> None:
        metrics.gauge("zeta", "Z.").set(1)
        metrics.counter("alpha_total", "A.").inc()
        metrics.histogram("mid_seconds", "M.").observe(1)
        assert list(self.read(metrics)) == ["zeta", "alpha_total", "mid_seconds"]

    def test_every_family_has_help_and_type(self, metrics: Metrics) -> None:
        metrics.gauge("g", "G.").set(1)
        metrics.counter("c_total", "C.", labels=("x",)).labels("y").inc()
        metrics.histogram("h", "H.").observe(0.1)
        for fam in self.read(metrics).values():
            assert fam.help and fam.type != "untyped"
