"""Rendering: model -> {path: FileSpec}. Pure: reads templates, writes nothing.

Every file that lands on a node is one template under overlays/<role>/ (or overlays/common/
for both roles; overlays/doc/ for every package, overlays/apt-source/ for lvs-apt-source,
overlays/cluster-key/ for lvs-cluster-key: the directors' heartbeat keys, the one package
that carries a secret and is never published), at the path it lands on, with `.j2` appended.
Path segments are templates too (`usr/share/doc/{{ package }}/copyright.j2`); a template
whose name renders empty is not shipped. `DEBIAN/` holds the maintainer scripts, rendered by
`render_control`; they are package metadata, not node files.
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
from .authkey import Ring
from .model import Cluster, Extra, Kind, Role

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


def sources_name(cluster: Cluster) -> str:
    """The repository's sources entry, in /etc/apt/sources.list.d/ (and in the repository)."""
    return f"lvs-{cluster.name}.sources"


def version(cluster: Cluster, kind: Kind, ring: Ring | None) -> str:
    """A package's version: the spec's, but lvs-cluster-key's is its key file's serial (a
    rotation step is a new version, whatever the cluster's version)."""
    if kind is Extra.CLUSTER_KEY:
        assert ring is not None
        return str(ring.serial)
    return cluster.package.version


def context(cluster: Cluster, role: Kind, ring: Ring | None, epoch: int,
            repo_key: str | None = None) -> dict[str, object]:
    repo = cluster.repository
    return {
        "c": cluster,
        "role": role.value,
        "package": role.package,
        "version": version(cluster, role, ring),
        "ring": ring,
        # lvs-cluster-key at a rotation's sign step: the signing key changes (no reread on install)
        "switch": ring is not None and ring.switching,
        # The sources entry (overlays/apt-source/): only with a repository in the spec.
        "repo_sources": sources_name(cluster) if repo else "",
        "repo_url": repo.url if repo else None,
        "repo_key": repo_key,
        # Debian changelog date (RFC 2822, UTC) of the build time.
        "changelog_date": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch)),
    }


# The overlays/ layers of each package, later ones replacing a file of the same path.
LAYERS: dict[Kind, tuple[str, ...]] = {
    Role.DIRECTOR: ("doc", "common", "director"),
    Role.REALSERVER: ("doc", "common", "realserver"),
    Extra.APT_SOURCE: ("doc", "apt-source"),
    Extra.CLUSTER_KEY: ("doc", "cluster-key"),
}


def _templates(role: Kind, control: bool) -> list[tuple[str, Path]]:
    """(template name relative to overlays/, its file) for a package, common ones first."""
    found: dict[str, tuple[str, Path]] = {}
    for layer in LAYERS[role]:
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


def _render_set(cluster: Cluster, role: Kind, ring: Ring | None, epoch: int,
                control: bool, repo_key: str | None = None) -> dict[str, FileSpec]:
    env = environment()
    ctx = context(cluster, role, ring, epoch, repo_key)
    out: dict[str, FileSpec] = {}
    for name, path in _templates(role, control):
        rel = name.split("/", 1)[1]
        if env.from_string(rel).render(ctx).removesuffix(".j2").endswith("/"):
            continue  # its name rendered empty: not for this spec
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


def render(cluster: Cluster, role: Kind, ring: Ring | None = None, *, epoch: int,
           repo_key: str | None = None) -> dict[str, FileSpec]:
    """Every file that lands on a node of `role`, keyed by its path relative to /.
    `ring` is the cluster's keys (lvs-cluster-key only); `epoch` dates the changelog
    (SOURCE_DATE_EPOCH); `repo_key` is the repository's public key (armored) when the spec
    names one."""
    if (role is Extra.CLUSTER_KEY) != (ring is not None):
        raise ValueError("the cluster's keys go into lvs-cluster-key, and only there")
    if cluster.repository is not None and cluster.repository.key is not None and repo_key is None:
        raise ValueError("the sources entry needs the repository's public key")
    return _render_set(cluster, role, ring, epoch, control=False, repo_key=repo_key)


def sources_entry(cluster: Cluster, url: str, public_key: str | None) -> str:
    """The sources entry for a repository at `url` (signed by `public_key`, if any): the same
    template the role packages ship it from."""
    ctx = context(cluster, Extra.APT_SOURCE, None, 0, public_key)
    ctx.update(repo_url=url, repo_sources=sources_name(cluster))
    return environment().get_template("apt-source/etc/apt/sources.list.d/{{ repo_sources }}.j2").render(ctx)


def render_control(cluster: Cluster, role: Kind, ring: Ring | None = None) -> dict[str, FileSpec]:
    """The maintainer scripts of a role package, keyed by their name (postinst, ...)."""
    files = _render_set(cluster, role, ring, 0, control=True)
    return {rel.split("/", 1)[1]: f for rel, f in files.items()}


def conffiles(files: dict[str, FileSpec]) -> list[str]:
    return sorted("/" + p for p in files if p.startswith("etc/"))
