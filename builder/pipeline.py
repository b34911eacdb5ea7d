"""The library calls behind the CLI: spec -> model -> render -> artefacts."""

from __future__ import annotations

import contextlib
import dataclasses
import os
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
from .run import require
from .writer import Change, compare, staging, write_tree


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


def cluster_keys(loaded: Loaded, authkey_file: Path | None) -> authkey.Ring:
    """The heartbeat keys, which must exist: `keygen` (or `init`) made them, never a build."""
    path = key_path(loaded, authkey_file)
    return authkey.read(path, authkey.keygen_hint(loaded.spec_path, path))


def check_key_continuity(out: Path, ring: authkey.Ring, key_change: bool) -> None:
    """Refuse keys that are no rotation step from the newest lvs-cluster-key in `out` (or,
    before it existed, lvs-director: the previous version, which the running directors have),
    unless the operator asks for a key change: each must list the other's signing key (add,
    sign, drop, one at a time; a new key out of nowhere or a step skipped shuts a director out)."""
    if key_change:
        return
    newest = deb.newest(out, Extra.CLUSTER_KEY.package) or deb.newest(out, Role.DIRECTOR.package)
    carried = deb.carried_keys(newest) if newest is not None else None
    if carried is None:
        return
    ours = authkey.record_of(ring)
    if not carried.accepts(ours):
        raise BuilderError(f"{newest}: signs with cluster key {carried.signing}, this build's keys are "
                           f"{ring.summary()}; a director with the one and its peer with the other cannot "
                           "authenticate each other (split brain): rotate the key one step at a time "
                           "(README, 'The cluster key') or pass --key-change")


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


def role_files(loaded: Loaded, role: Kind, authkey_file: Path | None) -> dict[str, FileSpec]:
    ring = cluster_keys(loaded, authkey_file) if role is Extra.CLUSTER_KEY else None
    return render(loaded.cluster, role, ring, epoch=deb.build_epoch(), repo_key=repo_key(loaded))


def render_role(loaded: Loaded, role: Kind, out: Path, *, authkey_file: Path | None = None,
                dry_run: bool = False, force: bool = False) -> list[Change]:
    files = role_files(loaded, role, authkey_file)
    if dry_run:
        return compare(files, out)
    return write_tree(files, out, force)


def extras(cluster: Cluster) -> list[Kind]:
    """What every node of the cluster gets beside its role package: lvs-apt-source, when the
    spec names a repository."""
    return [Extra.APT_SOURCE] if cluster.repository is not None else []


def published(cluster: Cluster) -> list[Kind]:
    """The packages of a cluster that its repository publishes: its roles and its extras;
    never lvs-cluster-key."""
    return [*Role, *extras(cluster)]


def with_keys(kinds: list[Kind]) -> list[Kind]:
    """`kinds`, and lvs-cluster-key beside lvs-director (which cannot be installed without it)."""
    if Role.DIRECTOR in kinds and Extra.CLUSTER_KEY not in kinds:
        return [*kinds, Extra.CLUSTER_KEY]
    return kinds


def build_debs(loaded: Loaded, kinds: list[Kind], out: Path, *, authkey_file: Path | None = None,
               lint: bool = False, key_change: bool = False,
               previous: Path | None = None) -> list[tuple[deb.BuiltDeb, str | None]]:
    """The packages, into `out`; lvs-cluster-key's keys checked against the newest one in
    `previous` (default: `out`)."""
    ring = cluster_keys(loaded, authkey_file) if Extra.CLUSTER_KEY in kinds else None
    if ring is not None:
        check_key_continuity(previous or out, ring, key_change)
    require("dpkg-deb", "dpkg")  # before `out` is made
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        with staging(out / "debs") as tmp:  # all or nothing: each moves into `out` once all are built
            for kind in kinds:
                built = deb.build(loaded.cluster, kind, tmp, ring if kind is Extra.CLUSTER_KEY else None,
                                  repo_key(loaded))
                verdict = deb.lintian(built.path) if lint else None
                results.append((built, verdict))
            for built, _ in results:
                os.replace(built.path, out / built.path.name)
    except BaseException:
        if made:  # nothing built: not even the directory stays
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return [(dataclasses.replace(b, path=out / b.path.name), v) for b, v in results]


def build_image(loaded: Loaded, role: Role, out: Path, fmt: image.ImageFormat, *,
                authkey_file: Path | None = None, key_change: bool = False,
                on_step: Callable[[str], None] = lambda s: None,
                firmware: image.Firmware | None = None) -> tuple[list[deb.BuiltDeb], image.BuiltImage]:
    """The node's packages (its role's first; the director's keys, lvs-apt-source when the spec
    names a repository), then its image from them, for `firmware` (default: the spec's
    images.firmware); tools are checked before anything is built."""
    firmware = firmware or loaded.cluster.images.firmware
    image.check_tools(firmware)
    built = [b for b, _ in build_debs(loaded, node_packages(loaded.cluster, role), out,
                                      authkey_file=authkey_file, key_change=key_change)]
    return built, image.build(loaded.cluster, role, built[0].path, out, fmt, on_step=on_step,
                              extra=[b.path for b in built[1:]], firmware=firmware)


def node_packages(cluster: Cluster, role: Role) -> list[Kind]:
    """What a node of `role` is installed with: its role package, the director's keys, the
    repository's sources entry."""
    return with_keys([role, *extras(cluster)])


def normalized_yaml(cluster: Cluster) -> str:
    import yaml

    return yaml.safe_dump(model.to_data(cluster), sort_keys=False, default_flow_style=False)


def lab_images(loaded: Loaded, images: Path, *, build: bool, authkey_file: Path | None = None,
               key_change: bool = False, on_step: Callable[[str], None] = lambda s: None, command: str = "lab",
               roles: tuple[Role, ...] = (Role.DIRECTOR, Role.REALSERVER),
               firmware: image.Firmware | None = None) -> dict[Role, Path]:
    """The role images the lab (or build-pxe) boots: those in `images` if they were built from the packages this
    spec gives now (byte-identical .debs, the image newer than its .deb) for `firmware` (default: the spec's
    images.firmware), else built afresh."""
    firmware = firmware or loaded.cluster.images.firmware
    found: dict[Role, Path] = {}
    for role in roles:
        path = images / f"{image.image_name(loaded.cluster, role)}.qcow2"
        with private_tmp(images) as tmp:
            fresh = [b for b, _ in build_debs(loaded, node_packages(loaded.cluster, role), tmp,
                                              authkey_file=authkey_file, key_change=key_change, previous=images)]
            debs = [images / b.path.name for b in fresh]
            current = (path.exists() and all(d.exists() and d.read_bytes() == b.path.read_bytes()
                                              for d, b in zip(debs, fresh, strict=True))
                       and path.stat().st_mtime >= max(d.stat().st_mtime for d in debs)
                       and image.firmware_of(path) is firmware)
        if not current:
            if not build:
                built_for = image.firmware_of(path)
                why = ("missing" if not path.exists() else "older than the spec" if built_for is firmware
                       else f"built for {built_for.value}, not {firmware.value}")
                raise BuilderError(f"{path}: {why}; run build-image {role.value} (or {command} without --no-build)")
            on_step(f"building {path.name} (the spec's packages changed or it is missing)")
            build_image(loaded, role, images, image.ImageFormat.QCOW2, authkey_file=authkey_file,
                        key_change=key_change, on_step=on_step, firmware=firmware)
        found[role] = path
    return found


def build_pxe(loaded: Loaded, images: Path, out: Path, *, build: bool, authkey_file: Path | None = None,
              key_change: bool = False, on_step: Callable[[str], None] = lambda s: None,
              force: bool = False) -> dict[str, Any]:
    """The PXE tree of a spec, from its current role images (built first if needed)."""
    pxe.check_ready(loaded.cluster)  # before anything is built
    pxe.check_tools()
    found = lab_images(loaded, images, build=build, authkey_file=authkey_file, key_change=key_change,
                       on_step=on_step, command="build-pxe")
    roles = {role: pxe.RoleFiles(path, path.with_suffix(".vmlinuz"), path.with_suffix(".initrd"))
             for role, path in found.items()}
    on_step(f"making {out}: squashfs root filesystems from the images, pxelinux entries, dnsmasq configuration")
    return pxe.build_tree(loaded.cluster, roles, out, force)


def lab_pxe_tree(loaded: Loaded, images: Path, tree: Path, *, build: bool, authkey_file: Path | None = None,
                 key_change: bool = False, on_step: Callable[[str], None] = lambda s: None) -> Path:
    """The PXE tree `lab --pxe` boots: `tree` if it was made from the current images and the
    spec's entries, else made afresh."""
    found = lab_images(loaded, images, build=build, authkey_file=authkey_file, key_change=key_change,
                       on_step=on_step, command="lab --pxe")
    manifest = tree / pxe.MANIFEST
    current = manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in found.values()) \
        and all((tree / rel).exists() and (tree / rel).read_text() == text
                for rel, text in pxe.render_configs(loaded.cluster, pxe.uefi_capable(list(found.values()))).items())
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


# What `lab --upgrade-to` may change: the rest is the booted cluster's (its nodes, their
# wiring, its services), which an upgrade of the role packages cannot change.
UPGRADABLE = ("heartbeat", "package")


def upgrade_target(base: Cluster, target: Cluster, label: str) -> Cluster:
    """`target` as the booted cluster's next version, if it is the same cluster with other
    heartbeat settings (a second path, ping nodes, timings); else one line naming the field."""
    for f in dataclasses.fields(Cluster):
        if f.name not in UPGRADABLE and getattr(base, f.name) != getattr(target, f.name):
            raise BuilderError(f"--upgrade-to {label}: {f.name} is not the booted spec's; an upgrade of the "
                               f"role packages changes only {' and '.join(UPGRADABLE)}")
    if target.heartbeat_links != base.heartbeat_links:
        raise BuilderError(f"--upgrade-to {label}: heartbeat.media: its links of the directors' own (ucast with "
                           "addresses) are not the booted spec's; a director's address there is set at boot")
    return upgraded(dataclasses.replace(
        target, package=dataclasses.replace(target.package, version=base.package.version)))


def lab_upgrade_repo(loaded: Loaded, out: Path, url: str, new: Cluster) -> None:
    """The repository `lab --upgrade` serves: the spec's packages and those of `new` (the spec's
    next version, or upgrade_target's), no keys among them, signed with a throw-away key."""
    with private_tmp(out.parent) as tmp:
        debs = [b.path for cluster in (loaded.cluster, new)
                for b, _ in build_debs(dataclasses.replace(loaded, cluster=cluster), published(cluster),
                                       tmp / cluster.package.version)]
        # The throw-away signing key's GnuPG home stays short: gpg-agent's socket path must fit
        # in 108 bytes (a workdir under pytest's tmp did not). It holds no cluster key.
        user = f"lvs-builder lab <lab@{loaded.cluster.name}.invalid>"
        with tempfile.TemporaryDirectory(prefix="lvs-gpg-") as gpg_home, \
                repo.throwaway_key(Path(gpg_home) / "gnupg", user) as key:
            repo.build(loaded.cluster, debs, out, url, key)


def rotation_steps(ring: authkey.Ring) -> list[authkey.RotateStep]:
    """The steps from `ring` to the end of a rotation to a new key."""
    steps = list(authkey.RotateStep)
    if len(ring.keys) == 2:
        steps = steps[2:] if ring.auth == ring.keys[-1][0] else steps[1:]
    return steps


def lab_rotation(loaded: Loaded, out: Path, *, authkey_file: Path | None = None,
                 cluster: Cluster | None = None) -> list[tuple[authkey.RotateStep, Path]]:
    """The lvs-cluster-key packages of a key rotation to a new key that `lab --upgrade` runs
    after the upgrade (of `cluster`, default the spec's), one per step, into `out` (owner
    only). The spec's key file is read, never changed: the lab's new key lives in these
    packages only."""
    ring = cluster_keys(loaded, authkey_file)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    built = []
    for step in rotation_steps(ring):
        ring = ring.rotated(step)
        built.append((step, deb.build(cluster or loaded.cluster, Extra.CLUSTER_KEY, out, ring).path))
    return built
