"""Rendering: model -> {path: FileSpec}. Pure: reads templates, writes nothing.

Every file that lands on a node is one template under overlays/<role>/ (or overlays/common/
for both roles), at the path it lands on, with `.j2` appended. Path segments are templates
too (`usr/share/doc/{{ package }}/copyright.j2`). `DEBIAN/` holds the maintainer scripts,
rendered by `render_control`; they are package metadata, not node files.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import data_root
from .model import Cluster, Role

CONTROL_DIR = "DEBIAN"

# Files whose mode is not the template's: secrets.
MODES = {"etc/ha.d/authkeys": 0o600}


@dataclass(frozen=True)
class FileSpec:
    content: bytes
    mode: int = 0o644
    owner: str = "root:root"

    @property
    def is_text(self) -> bool:
        return b"\0" not in self.content and not self.content.startswith(b"\x1f\x8b")


def overlays_dir() -> Path:
    return data_root() / "overlays"


def _seconds(value: float) -> str:
    """heartbeat's time syntax: whole seconds plain, anything finer in ms."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}ms"


def _yesno(value: bool) -> str:
    return "yes" if value else "no"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(overlays_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["seconds"] = _seconds
    env.filters["yesno"] = _yesno
    return env


def context(cluster: Cluster, role: Role, authkey: str | None, epoch: int) -> dict[str, object]:
    return {
        "c": cluster,
        "role": role.value,
        "package": role.package,
        "authkey": authkey,
        # Debian changelog date (RFC 2822, UTC) of the build time.
        "changelog_date": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch)),
    }


def _templates(role: Role, control: bool) -> list[tuple[str, Path]]:
    """(template name relative to overlays/, its file) for a role, common ones first."""
    found: dict[str, tuple[str, Path]] = {}
    for layer in ("common", role.value):
        base = overlays_dir() / layer
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(base).as_posix()
            if rel.startswith(CONTROL_DIR + "/") != control:
                continue
            found[rel] = (f"{layer}/{rel}", path)  # a role file replaces a common one
    return [found[k] for k in sorted(found)]


def _render_set(cluster: Cluster, role: Role, authkey: str | None, epoch: int,
                control: bool) -> dict[str, FileSpec]:
    env = environment()
    ctx = context(cluster, role, authkey, epoch)
    out: dict[str, FileSpec] = {}
    for name, path in _templates(role, control):
        rel = name.split("/", 1)[1]
        if rel.endswith(".j2"):
            rel = rel[:-3]
            text = env.get_template(name).render(ctx)
            data = text.encode("utf-8")
        else:
            data = path.read_bytes()
        rel = env.from_string(rel).render(ctx)
        if rel.endswith(".gz"):
            buf = io.BytesIO()
            with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
                gz.write(data)
            data = buf.getvalue()
        executable = bool(os.stat(path).st_mode & stat.S_IXUSR)
        mode = MODES.get(rel, 0o755 if executable else 0o644)
        out[rel] = FileSpec(data, mode)
    return out


def render(cluster: Cluster, role: Role, authkey: str | None, *, epoch: int) -> dict[str, FileSpec]:
    """Every file that lands on a node of `role`, keyed by its path relative to /.
    `epoch` dates the changelog (SOURCE_DATE_EPOCH)."""
    if role is Role.DIRECTOR and authkey is None:
        raise ValueError("the director's authkeys needs the cluster key")
    return _render_set(cluster, role, authkey, epoch, control=False)


def render_control(cluster: Cluster, role: Role) -> dict[str, FileSpec]:
    """The maintainer scripts of a role package, keyed by their name (postinst, ...)."""
    files = _render_set(cluster, role, None, 0, control=True)
    return {rel.split("/", 1)[1]: f for rel, f in files.items()}


def conffiles(files: dict[str, FileSpec]) -> list[str]:
    return sorted("/" + p for p in files if p.startswith("etc/"))
