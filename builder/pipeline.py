"""The library calls behind the CLI: spec -> model -> render -> artefacts."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import authkey, deb, image, model, pxe, repo, spec
from .errors import BuilderError, Problem
from .model import Cluster, Extra, Kind, Release, Role
from .render import FileSpec, render
from .writer import Change, compare, write_tree


@dataclass(frozen=True)
class Loaded:
    cluster: Cluster
    spec_path: Path | None
    warnings: list[Problem]


def load_cluster(spec_path: Path | None, *, release: str | None = None,
                 allow_weak_auth: bool = False) -> Loaded:
    cluster, warnings = spec.load(spec_path, allow_weak_auth=allow_weak_auth)
    if release is not None:
        cluster = dataclasses.replace(cluster, release=Release(release))
    return Loaded(cluster, spec_path, warnings)


@contextlib.contextmanager
def private_tmp(near: Path) -> Iterator[Path]:
    """A scratch directory for copies of the packages (the director's carries the key): in
    `near` (created if missing), not in the system's world-readable temporary directory, mode
    0700, removed on every way out."""
    near.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=near, prefix=".lvs-builder-") as tmp:
        yield Path(tmp)


def key_path(loaded: Loaded, authkey_file: Path | None) -> Path:
    """Where the cluster's key is: --authkey-file, else beside the spec."""
    return authkey_file if authkey_file is not None else authkey.default_path(loaded.spec_path)


def cluster_key(loaded: Loaded, authkey_file: Path | None) -> str:
    """The heartbeat key, which must exist: `keygen` (or `init`) made it, never a build."""
    path = key_path(loaded, authkey_file)
    return authkey.read(path, authkey.keygen_hint(loaded.spec_path, path))


def check_key_continuity(out: Path, key: str, key_change: bool) -> None:
    """Refuse a director package with another key than the newest one already in `out` carries
    (the previous version, which the running directors have), unless the operator asks for a
    key change."""
    newest = deb.newest(out, Role.DIRECTOR.package)
    if newest is None or key_change:
        return
    carried = deb.carried_key(newest)
    ours = authkey.fingerprint(key)
    if carried is not None and carried != ours:
        raise BuilderError(f"{newest}: carries cluster key {carried}, this build's key is {ours}; a director "
                           "with another key than its peer splits the brain: rotate it (README, 'The cluster "
                           "key') or pass --key-change")


def repo_key(loaded: Loaded) -> str | None:
    """The repository's public key the spec names (repository.key, relative to the spec)."""
    repository = loaded.cluster.repository
    if repository is None or repository.key is None:
        return None
    path = Path(repository.key)
    if not path.is_absolute():
        path = (loaded.spec_path.parent if loaded.spec_path else Path.cwd()) / path
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BuilderError(f"repository.key: {path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in text:
        raise BuilderError(f"repository.key: {path}: not an armored OpenPGP public key "
                           "(gpg --armor --export KEYID writes one)")
    return text


def role_files(loaded: Loaded, role: Role, authkey_file: Path | None) -> dict[str, FileSpec]:
    key = cluster_key(loaded, authkey_file) if role is Role.DIRECTOR else None
    return render(loaded.cluster, role, key, epoch=deb.build_epoch(), repo_key=repo_key(loaded))


def render_role(loaded: Loaded, role: Role, out: Path, *, authkey_file: Path | None = None,
                dry_run: bool = False) -> list[Change]:
    files = role_files(loaded, role, authkey_file)
    if dry_run:
        return compare(files, out)
    return write_tree(files, out)


def extras(cluster: Cluster) -> list[Kind]:
    """What every node of the cluster gets beside its role package: lvs-apt-source, when the
    spec names a repository."""
    return [Extra.APT_SOURCE] if cluster.repository is not None else []


def published(cluster: Cluster) -> list[Kind]:
    """The packages of a cluster: its roles and its extras."""
    return [*Role, *extras(cluster)]


def build_debs(loaded: Loaded, roles: list[Kind], out: Path, *, authkey_file: Path | None = None,
               lint: bool = False, key_change: bool = False,
               previous: Path | None = None) -> list[tuple[deb.BuiltDeb, str | None]]:
    """The packages, into `out`; the director's key checked against the newest director
    package in `previous` (default: `out`)."""
    key = cluster_key(loaded, authkey_file) if Role.DIRECTOR in roles else None
    if key is not None:
        check_key_continuity(previous or out, key, key_change)
    results = []
    for role in roles:
        built = deb.build(loaded.cluster, role, out, key if role is Role.DIRECTOR else None, repo_key(loaded))
        verdict = deb.lintian(built.path) if lint else None
        results.append((built, verdict))
    return results


def build_image(loaded: Loaded, role: Role, out: Path, fmt: image.ImageFormat, *,
                authkey_file: Path | None = None, key_change: bool = False,
                on_step: Callable[[str], None] = lambda s: None) -> tuple[deb.BuiltDeb, image.BuiltImage]:
    """The role's .deb (and lvs-apt-source's, when the spec names a repository), then its image
    from them; tools are checked before anything is built."""
    image.check_tools()
    [(built_deb, _), *sources] = build_debs(loaded, [role, *extras(loaded.cluster)], out, authkey_file=authkey_file,
                                            key_change=key_change)
    return built_deb, image.build(loaded.cluster, role, built_deb.path, out, fmt, on_step=on_step,
                                  apt_source=sources[0][0].path if sources else None)


def normalized_yaml(cluster: Cluster) -> str:
    import yaml

    return yaml.safe_dump(model.to_data(cluster), sort_keys=False, default_flow_style=False)


def lab_images(loaded: Loaded, images: Path, *, build: bool, authkey_file: Path | None = None,
               key_change: bool = False, on_step: Callable[[str], None] = lambda s: None, command: str = "lab",
               roles: tuple[Role, ...] = (Role.DIRECTOR, Role.REALSERVER)) -> dict[Role, Path]:
    """The role images the lab (or build-pxe) boots: those in `images` if they were built from the packages this
    spec gives now (byte-identical .debs, the image newer than its .deb), else built afresh."""
    found: dict[Role, Path] = {}
    for role in roles:
        path = images / f"{image.image_name(loaded.cluster, role)}.qcow2"
        with private_tmp(images) as tmp:
            fresh = [b for b, _ in build_debs(loaded, [role, *extras(loaded.cluster)], tmp,
                                              authkey_file=authkey_file, key_change=key_change, previous=images)]
            debs = [images / b.path.name for b in fresh]
            current = (path.exists() and all(d.exists() and d.read_bytes() == b.path.read_bytes()
                                              for d, b in zip(debs, fresh, strict=True))
                       and path.stat().st_mtime >= max(d.stat().st_mtime for d in debs))
        if not current:
            if not build:
                why = "missing" if not path.exists() else "older than the spec"
                raise BuilderError(f"{path}: {why}; run build-image {role.value} (or {command} without --no-build)")
            on_step(f"building {path.name} (the spec's packages changed or it is missing)")
            build_image(loaded, role, images, image.ImageFormat.QCOW2, authkey_file=authkey_file,
                        key_change=key_change, on_step=on_step)
        found[role] = path
    return found


def build_pxe(loaded: Loaded, images: Path, out: Path, *, build: bool, authkey_file: Path | None = None,
              key_change: bool = False, on_step: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The PXE tree of a spec, from its current role images (built first if needed)."""
    pxe.check_ready(loaded.cluster)  # before anything is built
    pxe.check_tools()
    found = lab_images(loaded, images, build=build, authkey_file=authkey_file, key_change=key_change,
                       on_step=on_step, command="build-pxe")
    roles = {role: pxe.RoleFiles(path, path.with_suffix(".vmlinuz"), path.with_suffix(".initrd"))
             for role, path in found.items()}
    on_step(f"making {out}: squashfs root filesystems from the images, pxelinux entries, dnsmasq configuration")
    return pxe.build_tree(loaded.cluster, roles, out)


def lab_pxe_tree(loaded: Loaded, images: Path, tree: Path, *, build: bool, authkey_file: Path | None = None,
                 key_change: bool = False, on_step: Callable[[str], None] = lambda s: None) -> Path:
    """The PXE tree `lab --pxe` boots: `tree` if it was made from the current images and the
    spec's entries, else made afresh."""
    found = lab_images(loaded, images, build=build, authkey_file=authkey_file, key_change=key_change,
                       on_step=on_step, command="lab --pxe")
    manifest = tree / pxe.MANIFEST
    current = manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in found.values()) \
        and all((tree / rel).exists() and (tree / rel).read_text() == text
                for rel, text in pxe.render_configs(loaded.cluster).items())
    if not current:
        if not build:
            raise BuilderError(f"{tree}: missing or older than the images; run build-pxe --out {tree} "
                               "(or lab --pxe without --no-build)")
        build_pxe(loaded, images, tree, build=build, authkey_file=authkey_file, key_change=key_change,
                  on_step=on_step)
    return tree


def next_version(version: str) -> str:
    """The version after `version`: its last number raised (1.0 -> 1.1, 2 -> 3, 1.0~rc1 -> 1.0~rc2)."""
    m = re.fullmatch(r"(.*?)(\d+)", version)
    return f"{m.group(1)}{int(m.group(2)) + 1}" if m else f"{version}.1"


def upgraded(cluster: Cluster) -> Cluster:
    """The change `lab --upgrade` rolls out: the next package version, and heartbeat's warntime
    halfway to deadtime (harmless, and the running heartbeat reports it: proof that the new
    ha.cf took effect)."""
    t = cluster.heartbeat.timing
    timing = dataclasses.replace(t, warntime=round((t.warntime + t.deadtime) / 2, 3))
    return dataclasses.replace(
        cluster, package=dataclasses.replace(cluster.package, version=next_version(cluster.package.version)),
        heartbeat=dataclasses.replace(cluster.heartbeat, timing=timing))


def lab_upgrade_repo(loaded: Loaded, out: Path, url: str, *, authkey_file: Path | None = None) -> Cluster:
    """The repository `lab --upgrade` serves: the spec's packages and the upgraded ones,
    signed with a throw-away key. Returns the upgraded cluster."""
    new = upgraded(loaded.cluster)
    with private_tmp(out.parent) as tmp:
        debs = [b.path for cluster in (loaded.cluster, new)
                for b, _ in build_debs(dataclasses.replace(loaded, cluster=cluster), published(cluster),
                                       tmp / cluster.package.version, authkey_file=authkey_file)]
        # The throw-away signing key's GnuPG home stays short: gpg-agent's socket path must fit
        # in 108 bytes (a workdir under pytest's tmp did not). It holds no cluster key.
        user = f"lvs-builder lab <lab@{loaded.cluster.name}.invalid>"
        with tempfile.TemporaryDirectory(prefix="lvs-gpg-") as gpg_home, \
                repo.throwaway_key(Path(gpg_home) / "gnupg", user) as key:
            repo.build(loaded.cluster, debs, out, url, key)
    return new
