"""Writing a rendered tree: compare, dry-run or diff, stage, then rename into place."""

from __future__ import annotations

import difflib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import BuilderError
from .render import FileSpec

MARKER = ".lvs-builder"  # in every directory lvs-builder replaces: the files it wrote there
MARKER_HEADER = "# made by lvs-builder: the files it wrote here (it keeps, and never removes, any other)\n"


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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(spec.content)
        except OSError as e:  # a full disk names no file: this one
            raise OSError(e.errno, e.strerror, e.filename or str(target)) from None
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
    except OSError as e:
        # A full disk, said of the directory the user gave, not of a scratch file inside it.
        if e.errno in (errno.ENOSPC, errno.EDQUOT) and str(e.filename or "").startswith(str(tmp)):
            what = e.strerror if "(writing " in (e.strerror or "") else f"{e.strerror} (writing {dest.name})"
            raise OSError(e.errno, what, str(dest.parent)) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _entries(top: Path) -> list[str]:
    """Every file, symlink and empty directory under `top`, relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.append(os.path.normpath(os.path.join(rel, name)))
        if not dirnames and not filenames and dirpath != str(top):
            found.append(os.path.normpath(rel))
    return sorted(found)


def _ours(dest: Path, legacy: str | None = None) -> set[str] | None:
    """What lvs-builder wrote in `dest` (its marker's list), None if it carries no marker. A tree
    made before the marker, known by its `legacy` file (a repository's or PXE tree's own
    index), is all lvs-builder's."""
    try:
        lines = (dest / MARKER).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        if legacy is not None and (dest / legacy).is_file():
            return set(_entries(dest))
        return None
    return {line for line in lines if line and not line.startswith("#")} | {MARKER}


def _same_file(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink() or not a.is_file() or not b.is_file():
        return False
    if a.stat().st_size != b.stat().st_size:
        return False
    return a.read_bytes() == b.read_bytes()


def claim(dest: Path, force: bool = False, legacy: str | None = None) -> None:
    """Refuse an output directory that is neither new, empty nor lvs-builder's own (its marker),
    unless `force`: then ours go beside what is there. Nothing there is removed either way."""
    if not os.path.lexists(dest):
        return
    if not dest.is_dir():
        raise BuilderError(f"{dest}: not a directory")
    if force or _ours(dest, legacy) is not None or not any(dest.iterdir()):
        return
    raise BuilderError(f"{dest}: not empty and not made by lvs-builder (no {MARKER} in it); give a new or "
                       "empty directory, or --force to write beside what is there (lvs-builder never removes "
                       "what it did not write)")


def replace_dir(new: Path, dest: Path, force: bool = False, legacy: str | None = None) -> None:
    """Move a fully built directory into place. What `dest` holds that lvs-builder did not write
    (its marker lists what it did) moves into the new tree first, untouched; a file of that kind
    where the new tree has one refuses the whole move. The old tree goes only after the new one
    is there. A file the new tree holds a copy of is no clash (a repository's old packages)."""
    claim(dest, force, legacy)
    written = _entries(new)
    keep: list[str] = []
    if os.path.lexists(dest):
        ours = _ours(dest, legacy) or {MARKER}
        keep = [e for e in _entries(dest) if e not in ours and not _same_file(dest / e, new / e)]
        for e in keep:
            parts = Path(e).parts
            clash = next((Path(*parts[:i]) for i in range(1, len(parts) + 1)
                          if os.path.lexists(new / Path(*parts[:i])) and
                          (i == len(parts) or not (new / Path(*parts[:i])).is_dir())), None)
            if clash is not None:
                raise BuilderError(f"{dest / e}: not written by lvs-builder, and it would replace it with "
                                   f"{clash}; move it away, then build again")
    (new / MARKER).write_text(MARKER_HEADER + "".join(f"{e}\n" for e in written), encoding="utf-8")
    os.chmod(new / MARKER, 0o644)
    moved: list[str] = []
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    try:
        for e in keep:
            (new / e).parent.mkdir(parents=True, exist_ok=True)
            os.rename(dest / e, new / e)
            moved.append(e)
        if os.path.lexists(dest):
            os.rename(dest, old)
            os.rename(new, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(new, dest)
    except BaseException:
        if os.path.lexists(old) and not os.path.lexists(dest):
            os.rename(old, dest)
        for e in reversed(moved):  # the user's files back where they were
            if os.path.lexists(new / e):
                (dest / e).parent.mkdir(parents=True, exist_ok=True)
                os.rename(new / e, dest / e)
        raise


def write_tree(files: dict[str, FileSpec], dest: Path, force: bool = False) -> list[Change]:
    """Render target `dest` becomes `files` (beside what lvs-builder did not write there):
    staged, then renamed into place."""
    changes = compare(files, dest)
    with staging(dest) as tmp:
        root = tmp / "root"
        root.mkdir()
        populate(files, root)
        replace_dir(root, dest, force)
    return changes
