"""Content types by file extension, and which ones are worth compressing.

The table follows nginx's ``mime.types`` for the common web formats, with the
current registrations where they changed (``text/javascript``, RFC 9239).  Text
types get ``; charset=utf-8`` (nginx's ``charset utf-8`` with its default
charset_types plus CSS/JS/Markdown): a site's text is UTF-8 unless it says
otherwise.  Unknown extensions are ``application/octet-stream`` (nginx's
default_type).
"""

from __future__ import annotations

__all__ = ["DEFAULT_TYPE", "content_type", "is_compressible"]

DEFAULT_TYPE = "application/octet-stream"

_TYPES: dict[str, str] = {
    "html": "text/html",
    "htm": "text/html",
    "css": "text/css",
    "js": "text/javascript",
    "mjs": "text/javascript",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "xml": "application/xml",
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/json",
    "map": "application/json",
    "webmanifest": "application/manifest+json",
    "wasm": "application/wasm",
    "svg": "image/svg+xml",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "ico": "image/x-icon",
    "bmp": "image/bmp",
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "pdf": "application/pdf",
    "zip": "application/zip",
    "gz": "application/gzip",
    "tar": "application/x-tar",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
    "webm": "video/webm",
}

#: given a charset parameter besides text/* (nginx's charset_types adds JS and RSS)
_CHARSET_TYPES = {"application/xml", "application/rss+xml", "application/atom+xml"}
#: compressed at build (nginx's gzip_types would be set to about this list);
#: images other than SVG, fonts in WOFF and archives are already compressed
_COMPRESSIBLE = {
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/json",
    "application/manifest+json",
    "application/wasm",
    "image/svg+xml",
    "image/x-icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
}


def _extension(key: str) -> str:
    name = key.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot + 1 :].lower() if dot > 0 else ""


def content_type(key: str) -> str:
    """The Content-Type value for a data key."""
    base = _TYPES.get(_extension(key), DEFAULT_TYPE)
    if base.startswith("text/") or base in _CHARSET_TYPES:
        return base + "; charset=utf-8"
    return base


def is_compressible(key: str) -> bool:
    base = _TYPES.get(_extension(key), DEFAULT_TYPE)
    return base.startswith("text/") or base in _COMPRESSIBLE
