"""Building images: freeze (import tracing) -> rootfs -> initramfs / OCI tar /
bundle -> xl config / QEMU boot.  See ``build`` for the commands."""

from .build import BuildResult, boot_main, build, build_main, kernel_cmdline
from .freeze import BuildError

__all__ = ["BuildError", "BuildResult", "boot_main", "build", "build_main", "kernel_cmdline"]
