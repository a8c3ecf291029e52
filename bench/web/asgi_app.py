"""The uvicorn peer of ``bench/web/run.py``: a tiny ASGI app serving the bench
files, each read once at start-up from ``$BENCH_ROOT`` (so that, like the
appliance and nginx's page cache, no request touches the file system).

    BENCH_ROOT=DIR uvicorn bench.web.asgi_app:app --http h11|httptools
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["app"]

_ROOT = Path(os.environ.get("BENCH_ROOT", "."))
_FILES = {"/" + p.name: p.read_bytes() for p in _ROOT.iterdir() if p.is_file()}
_NOT_FOUND = b"not found\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = _FILES.get(scope["path"])
    status = 200 if body is not None else 404
    body = body if body is not None else _NOT_FOUND
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
