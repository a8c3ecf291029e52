"""The web appliance's console commands, next to the runtime's own.

- ``sites``: the default site and each virtual host, with their file counts
  and sizes, as the running service has them built (after the last reload);
- ``cache``: what the core keeps in memory per site: resources, bytes held,
  gzip variants, files streamed from the data device instead, and the share
  of the site's memory budget in use.

Both read the live ``App`` the service answers with (one reference, swapped
whole on reload), so what they show is what requests get.
"""

from __future__ import annotations

from typing import Any

from runtime import Call, Command, Reply, find_service, table_text

from .app import App
from .server import WebService
from .site import Site

__all__ = ["COMMANDS"]


def _app(call: Call) -> App | None:
    service = find_service(call.ctx, WebService)
    responder = service.web.responder if service is not None else None
    return responder if isinstance(responder, App) else None


def _named_sites(call: Call, app: App) -> list[tuple[str, str, Site]]:
    """(name, where its files come from, site): the default site first."""
    root = call.ctx.options.root or "(embedded demo site)"
    vhosts_root = call.ctx.options.vhosts_root or "(embedded)"
    found = [("(default)", str(root), app.default)]
    found += [(name, f"{vhosts_root}/{name}", app.vhosts[name]) for name in sorted(app.vhosts)]
    return found


def _not_started() -> Reply:
    return Reply.failed("the web service has not built its sites yet")


def _sites(call: Call) -> Reply:
    app = _app(call)
    if app is None:
        return _not_started()
    rows: list[tuple[str, str, str, str]] = []
    data: list[dict[str, Any]] = []
    for name, source, site in _named_sites(call, app):
        files = len(site.resources)
        size = sum(resource.identity.size for resource in site.resources.values())
        rows.append((name, str(files), str(size), source))
        data.append({"site": name, "source": source, "files": files, "bytes": size})
    return Reply(table_text(rows, ("site", "files", "bytes", "source")), data)


def _cache(call: Call) -> Reply:
    app = _app(call)
    if app is None:
        return _not_started()
    rows: list[tuple[str, ...]] = []
    data: list[dict[str, Any]] = []
    totals = {"resources": 0, "in_memory": 0, "streamed": 0, "gzip_variants": 0, "bytes": 0}
    for name, _source, site in _named_sites(call, app):
        held = streamed = gzipped = memory = 0
        for resource in site.resources.values():
            for variant in (resource.identity, resource.gzip):
                if variant is None:
                    continue
                if variant is resource.gzip:
                    gzipped += 1
                if variant.body is not None:
                    memory += len(variant.body)
            if resource.identity.body is not None:
                held += 1
            else:
                streamed += 1
        budget = site.options.memory_budget
        counts = {
            "resources": len(site.resources),
            "in_memory": held,
            "streamed": streamed,
            "gzip_variants": gzipped,
            "bytes": memory,
        }
        data.append({"site": name, **counts, "budget": budget})
        for key, value in counts.items():
            totals[key] += value
        share = f"{100 * memory / budget:.1f}%" if budget else "-"
        rows.append((name, *(str(value) for value in counts.values()), share))
    header = ("site", "resources", "in memory", "streamed", "gzip", "bytes", "of budget")
    text = table_text(rows, header)
    text += (
        f"\ntotal: {totals['resources']} resources, {totals['bytes']} bytes in memory, "
        f"{totals['gzip_variants']} gzip variants"
    )
    return Reply(text, {"sites": data, "total": totals})


COMMANDS: tuple[Command, ...] = (
    Command("sites", _sites, "the default site and the virtual hosts, with their files"),
    Command("cache", _cache, "what each site keeps in memory: resources, bytes, gzip variants"),
)
