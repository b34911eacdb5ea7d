"""Writing a rendered tree: compare, dry-run or diff, stage, then rename into place."""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .render import FileSpec


@dataclass(frozen=True)
class Change:
    path: str
    kind: str  # "new", "changed", "same"
    diff: str = ""


def compare(files: dict[str, FileSpec], dest: Path) -> list[Change]:
    changes = []
    for rel, spec in sorted(files.items()):
        target = dest / rel
        if not target.exists():
            old = b""
            kind = "new"
        else:
            old = target.read_bytes()
            same = old == spec.content and (target.stat().st_mode & 0o7777) == spec.mode
            kind = "same" if same else "changed"
        diff = ""
        if kind != "same" and spec.is_text and b"\0" not in old:
            diff = "".join(difflib.unified_diff(
                old.decode("utf-8", "replace").splitlines(keepends=True),
                spec.content.decode("utf-8").splitlines(keepends=True),
                fromfile=f"a/{rel}", tofile=f"b/{rel}"))
        elif kind != "same":
            diff = f"Binary file {rel} {kind}\n"
        changes.append(Change(rel, kind, diff))
    return changes


def populate(files: dict[str, FileSpec], root: Path, mtime: int | None = None) -> None:
    """Write files under root (which must be a fresh directory), with their modes."""
    for rel, spec in sorted(files.items()):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(spec.content)
        os.chmod(target, spec.mode)
    if mtime is not None:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames + dirnames:
                os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)
        os.utime(root, (mtime, mtime))


@contextmanager
def staging(dest: Path) -> Iterator[Path]:
    """A scratch directory beside `dest` (same file system, so the final rename is atomic),
    removed whatever happens."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, dest: Path) -> None:
    """Move a fully built directory into place; the old one goes only after the new one is there."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.rename(dest, old)
        os.rename(new, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, dest)


def write_tree(files: dict[str, FileSpec], dest: Path) -> list[Change]:
    """Render target `dest` becomes exactly `files`: staged, then renamed into place."""
    changes = compare(files, dest)
    with staging(dest) as tmp:
        root = tmp / "root"
        root.mkdir()
        populate(files, root)
        replace_dir(root, dest)
    return changes
