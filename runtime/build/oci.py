"""The oci target: the frozen rootfs as an image ``docker load`` accepts.

One tar holds both an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/``) and Docker's ``manifest.json`` pointing at the same
blobs, as ``docker save`` writes since Docker 25, so old and new engines
(and skopeo/podman) load it.  One uncompressed layer (the tree), a config
whose entry point is the init and whose user is nobody; every byte is
fixed by the inputs, so digests are reproducible.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import tarfile

from ..appliance import Appliance
from ..image import INIT_ARGS, PYTHON
from .rootfs import NOBODY
from .tree import Tree, build_epoch

__all__ = ["image_config", "write_oci"]


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(appliance: Appliance, layer_digest: str, ports: list[str]) -> dict[str, object]:
    created = datetime.datetime.fromtimestamp(build_epoch(), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": f"{NOBODY}:{NOBODY}",
            "Entrypoint": [PYTHON, *INIT_ARGS],
            "Env": ["APPLIANCE_CONTAINER=1"],
            "ExposedPorts": {port: {} for port in ports},
            "StopSignal": "SIGTERM",
            "Labels": {
                "org.opencontainers.image.title": appliance.name,
                "org.opencontainers.image.version": appliance.version,
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created, "created_by": "python -m runtime build --target oci"}],
    }


def _ports(tree: Tree) -> list[str]:
    """Exposed ports from the baked ``listen`` values (UDP and TCP alike)."""
    import tomllib

    entry = tree.entries.get("etc/appliance.toml")
    values = tomllib.loads(entry.data.decode()) if entry else {}
    ports: set[str] = set()
    for address in values.get("listen", []):
        port = str(address).rpartition(":")[2]
        ports.update({f"{port}/tcp", f"{port}/udp"})
    return sorted(ports)


def write_oci(appliance: Appliance, tree: Tree) -> bytes:
    layer = tree.tar()
    layer_digest = _digest(layer)
    config = _json(image_config(appliance, layer_digest, _ports(tree)))
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": len(layer)}],
    })  # fmt: skip
    tag = f"appliance-{appliance.name}:{appliance.version}"
    index = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
                       "size": len(manifest),
                       "annotations": {"io.containerd.image.name": tag,
                                       "org.opencontainers.image.ref.name": appliance.version}}],
    })  # fmt: skip
    blob = {
        data: f"blobs/sha256/{_digest(data).removeprefix('sha256:')}" for data in (layer, config, manifest)
    }
    docker = _json([{"Config": blob[config], "RepoTags": [tag], "Layers": [blob[layer]]}])
    files = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        "manifest.json": docker,
        **{path: data for data, path in blob.items()},
    }
    out = io.BytesIO()
    mtime = build_epoch()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(files[path]), 0o644, mtime
            tar.addfile(info, io.BytesIO(files[path]))
    return out.getvalue()
