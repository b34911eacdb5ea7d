"""The cluster's heartbeat keys: created once, on purpose (`keygen`, `init`), kept beside the
spec, read by every build; never created or replaced by a build; rotated only step by step
(`rotate-key add|sign|drop`).

A director with another key than its peer cannot authenticate it and takes the VIP while the
peer holds it: a key that changed without the operator asking is a split brain at the next
rolling upgrade. So a missing key stops the build with what to do, and each lvs-cluster-key
package records which keys it carries (their fingerprints, never the keys) for the next build
to compare: it must list the previous package's signing key, and the previous package must
list its signing key. That admits the three steps of a rotation (add a key, sign with it, drop
the old one) and refuses a new key out of nowhere or a step skipped. heartbeat 3.0.6 itself
checks every message with its own signing key (whatever key the message names), so at the
sign step both directors switch together (lvs-cluster-key-switch); add and drop leave the
signing key as it is.

The key file is authkeys without the method, plus a serial (the lvs-cluster-key version)::

    serial 3
    auth 2
    1 <64 hex digits>
    2 <64 hex digits>

A file of one line of hex digits (lvs-builder before rings) is serial 1, auth 1, key 1.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import BuilderError

KEY_BYTES = 32  # 256 bits
_KEY_RE = re.compile(r"[0-9a-f]{64,}")
MAX_INDEX = 15  # heartbeat's key numbers: 1 to 15


class RotateStep(enum.Enum):
    """The three steps of a key rotation, each one lvs-cluster-key version installed on both
    directors before the next (README, 'The cluster key')."""
    ADD = "add"      # a new key beside the old one, accepted; the old one still signs
    SIGN = "sign"    # the new key signs; the old one is still accepted
    DROP = "drop"    # the old key is gone


@dataclass(frozen=True)
class Ring:
    """The keys heartbeat accepts (index, key; the newest last), the one it signs with, and
    the serial that versions the lvs-cluster-key package carrying them."""
    serial: int
    auth: int
    keys: tuple[tuple[int, str], ...]

    @property
    def signing(self) -> str:
        return dict(self.keys)[self.auth]

    @property
    def switching(self) -> bool:
        """At a rotation's sign step: two keys, the newer signs (the one the package changes)."""
        return len(self.keys) == 2 and self.auth == self.keys[-1][0]

    def text(self) -> str:
        return ("# The heartbeat keys of an LVS cluster (lvs-builder keygen / rotate-key): a secret; back it\n"
                "# up with the spec, never publish it. Every lvs-cluster-key package is built from it.\n"
                f"serial {self.serial}\nauth {self.auth}\n" + "".join(f"{i} {k}\n" for i, k in self.keys))

    def fingerprints(self) -> str:
        """authkeys' lines with each key's fingerprint in its place (what a package records)."""
        return f"auth {self.auth}\n" + "".join(f"{i} {fingerprint(k)}\n" for i, k in self.keys)

    def summary(self) -> str:
        others = [fingerprint(k) for i, k in self.keys if i != self.auth]
        return (f"serial {self.serial}, signing {fingerprint(self.signing)}"
                + (f", also listing {', '.join(others)}" if others else ""))

    def rotated(self, step: RotateStep, new_key: str | None = None) -> Ring:
        """The ring after one rotation step; a step out of order is refused."""
        indexes = [i for i, _ in self.keys]
        if step is RotateStep.ADD:
            if len(self.keys) != 1:
                raise BuilderError("rotate-key add: a rotation is under way (two keys); finish it: rotate-key "
                                   + ("sign" if self.auth == indexes[0] else "drop"))
            index = next(i for i in range(1, MAX_INDEX + 1) if i not in indexes)
            added = (index, new_key or secrets.token_hex(KEY_BYTES))
            return Ring(self.serial + 1, self.auth, (*self.keys, added))
        if len(self.keys) != 2:
            raise BuilderError(f"rotate-key {step.value}: no rotation is under way (one key); "
                               "start one: rotate-key add")
        old, new = self.keys
        if step is RotateStep.SIGN:
            if self.auth != old[0]:
                raise BuilderError("rotate-key sign: the new key signs already; next: rotate-key drop")
            return Ring(self.serial + 1, new[0], self.keys)
        if self.auth != new[0]:
            raise BuilderError("rotate-key drop: the old key still signs; first: rotate-key sign")
        return Ring(self.serial + 1, new[0], (new,))


@dataclass(frozen=True)
class Record:
    """What a package says of the keys it carries: the signing key's fingerprint and every
    accepted key's."""
    signing: str
    accepted: frozenset[str]

    def accepts(self, other: Record) -> bool:
        """One rotation step apart (or none): each lists the other's signing key."""
        return other.signing in self.accepted and self.signing in other.accepted


def record_of(ring: Ring) -> Record:
    return Record(fingerprint(ring.signing), frozenset(fingerprint(k) for _, k in ring.keys))


def parse_record(text: str) -> Record | None:
    """A package's record (Ring.fingerprints(), or the single fingerprint line of a
    lvs-director from before lvs-cluster-key)."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) == 1 and len(lines[0]) == 1:
        return Record(lines[0][0], frozenset(lines[0]))
    auth = next((ln[1] for ln in lines if ln[0] == "auth" and len(ln) == 2), None)
    keys = {ln[0]: ln[1] for ln in lines if ln[0] != "auth" and len(ln) == 2}
    if auth not in keys:
        return None
    return Record(keys[auth], frozenset(keys.values()))


def parse(text: str, where: Path) -> Ring:
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    bad = BuilderError(f"{where}: not a cluster key file (serial N, auth N, then N and 64 or more lower-case hex "
                       "digits per key; or one line of them)")
    if len(lines) == 1 and len(lines[0]) == 1:
        if not _KEY_RE.fullmatch(lines[0][0]):
            raise bad
        return Ring(1, 1, ((1, lines[0][0]),))
    fields: dict[str, int] = {}
    keys: list[tuple[int, str]] = []
    for ln in lines:
        if len(ln) != 2 or not ln[0].isdigit() and ln[0] not in ("serial", "auth") or not ln[1].isascii():
            raise bad
        if ln[0] in ("serial", "auth"):
            if ln[0] in fields or not ln[1].isdigit() or len(ln[1]) > 9:
                raise bad
            fields[ln[0]] = int(ln[1])
        elif not _KEY_RE.fullmatch(ln[1]) or not 1 <= int(ln[0]) <= MAX_INDEX or any(i == int(ln[0]) for i, _ in keys):
            raise bad
        else:
            keys.append((int(ln[0]), ln[1]))
    if set(fields) != {"serial", "auth"} or not 1 <= len(keys) <= 2 or fields["auth"] not in dict(keys) \
            or fields["serial"] < 1:
        raise bad
    return Ring(fields["serial"], fields["auth"], tuple(keys))


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


def read(path: Path, hint: str | None = None) -> Ring:
    """The keys at `path`; a missing file says which command creates it (`hint`)."""
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
    return parse(key, path)


def create(path: Path) -> Ring:
    """A new key at `path` (0600, written beside it, then linked into place); an existing key is
    never replaced."""
    if path.exists() or path.is_symlink():
        raise BuilderError(f"{path}: a cluster key is there already; keys are never replaced "
                           "(a key change is a rolling procedure: README, 'The cluster key')")
    ring = Ring(1, 1, ((1, secrets.token_hex(KEY_BYTES)),))
    _write(path, ring, replace=False)
    return read(path)


def rotate(path: Path, step: RotateStep, hint: str | None = None) -> Ring:
    """One rotation step on the key file at `path`, written in its place (0600)."""
    ring = read(path, hint).rotated(step)
    _write(path, ring, replace=True)
    return read(path)


def _write(path: Path, ring: Ring, replace: bool) -> None:
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
            os.write(fd, ring.text().encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if another keygen created it meanwhile: theirs stays
    except FileExistsError:
        raise BuilderError(f"{path}: a cluster key appeared there meanwhile; it is kept") from None
    except OSError as e:
        raise BuilderError(f"{path}: cannot {'write' if replace else 'create'} the cluster key: "
                           f"{e.strerror or e}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def fingerprint(key: str) -> str:
    """What a package records of the key it carries: a digest that names it, never the key."""
    return "sha256:" + hashlib.sha256(f"lvs-builder cluster key\0{key}".encode("ascii")).hexdigest()[:32]
