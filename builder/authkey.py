"""The cluster's heartbeat key: created once, on purpose (`keygen`, `init`), kept beside the
spec, read by every build; never created or replaced by a build.

A director with another key than its peer cannot authenticate it and takes the VIP while the
peer holds it: a key that changed without the operator asking is a split brain at the next
rolling upgrade. So a missing key stops the build with what to do, and each director package
records which key it carries (its fingerprint, never the key) for the next build to compare.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from pathlib import Path

from .errors import BuilderError

KEY_BYTES = 32  # 256 bits
_KEY_RE = re.compile(r"^[0-9a-f]{64,}$")


def default_path(spec_path: Path | None) -> Path:
    """`cluster.yaml` -> `cluster.authkey`; the built-in spec's key lives in the user's data dir.
    A spec that is not a regular file (`--spec /dev/stdin`, a pipe) has no place beside it."""
    if spec_path is not None:
        try:
            regular = stat.S_ISREG(spec_path.stat().st_mode)
        except OSError:
            regular = True  # the spec's own reading reports it
        if not regular:
            raise BuilderError(f"--spec {spec_path}: not a regular file, so no cluster key can live beside it; "
                               "name the key with --authkey-file")
        return spec_path.with_suffix(".authkey")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "lvs-builder" / "reference.authkey"


def keygen_hint(spec_path: Path | None, key_path: Path) -> str:
    """The command that creates this key."""
    if spec_path is not None and key_path == default_path(spec_path):
        return f"lvs-builder keygen --spec {spec_path}"
    if spec_path is None and key_path == default_path(None):
        return "lvs-builder keygen"
    return f"lvs-builder keygen --authkey-file {key_path}"


def read(path: Path, hint: str | None = None) -> str:
    """The key at `path`; a missing one says which command creates it (`hint`)."""
    try:
        st = path.stat()
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        hint = hint or f"lvs-builder keygen --authkey-file {path}"
        raise BuilderError(f"{path}: no cluster key; create it once with: {hint} "
                           "(a build never makes one: a director with a new key splits the brain)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BuilderError(f"{path}: cannot read the cluster key: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BuilderError(f"{path}: the cluster key is not a regular file")
    if st.st_mode & 0o077:
        raise BuilderError(f"{path}: the cluster key is readable by others (mode {st.st_mode & 0o777:04o}); "
                           f"chmod 600 {path}")
    if not _KEY_RE.match(key):
        raise BuilderError(f"{path}: not a cluster key (at least 64 lower-case hex digits)")
    return key


def create(path: Path) -> str:
    """A new key at `path` (0600, written beside it, then linked into place); an existing key is
    never replaced."""
    if path.exists() or path.is_symlink():
        raise BuilderError(f"{path}: a cluster key is there already; keys are never replaced "
                           "(a key change is a rolling procedure: README, 'The cluster key')")
    key = secrets.token_hex(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuilderError(f"{path}: cannot create the cluster key: {path.parent}: "
                           f"{'not a directory' if isinstance(e, FileExistsError) else e.strerror or e}") from None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (key + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if another keygen created it meanwhile: theirs stays
    except FileExistsError:
        raise BuilderError(f"{path}: a cluster key appeared there meanwhile; it is kept") from None
    except OSError as e:
        raise BuilderError(f"{path}: cannot create the cluster key: {e.strerror or e}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    return read(path)


def fingerprint(key: str) -> str:
    """What a package records of the key it carries: a digest that names it, never the key."""
    return "sha256:" + hashlib.sha256(f"lvs-builder cluster key\0{key}".encode("ascii")).hexdigest()[:32]
