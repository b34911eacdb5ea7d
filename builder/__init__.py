"""lvs-builder: one cluster description -> role packages, images, PXE trees, and a lab proof."""

from pathlib import Path

__version__ = "0.1.0"


def data_root() -> Path:
    """Where overlays/ and elements/ live: the checkout in development, /usr/share when packaged."""
    here = Path(__file__).resolve().parent.parent
    if (here / "overlays").is_dir():
        return here
    return Path("/usr/share/lvs-builder")
