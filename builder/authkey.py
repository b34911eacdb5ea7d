"""The cluster's heartbeat key: generated once, kept beside the spec, reused on every rebuild."""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from .errors import BuilderError

KEY_BYTES = 32  # 256 bits
_KEY_RE = re.compile(r"^[0-9a-f]{64,}$")


def default_path(spec_path: Path | None) -> Path:
    """`cluster.yaml` -> `cluster.authkey`; the built-in spec's key lives in the user's data dir."""
    if spec_path is not None:
        return spec_path.with_suffix(".authkey")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "lvs-builder" / "reference.authkey"


def read(path: Path) -> str:
    try:
        st = path.stat()
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise BuilderError(f"{path}: cannot read the cluster key: {e}") from None
    if st.st_mode & 0o077:
        raise BuilderError(f"{path}: the cluster key is readable by others (mode {st.st_mode & 0o777:04o}); "
                           f"chmod 600 {path}")
    if not _KEY_RE.match(key):
        raise BuilderError(f"{path}: not a cluster key (at least 64 lower-case hex digits)")
    return key


def ensure(path: Path) -> str:
    """The key at `path`, created (0600, atomically) if there is none yet."""
    if path.exists():
        return read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(KEY_BYTES)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".authkey-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key + "\n").encode("ascii"))
        os.close(fd)
        os.link(tmp, path)  # fails if another build created it meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return read(path)
