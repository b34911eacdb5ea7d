"""The command line: click parses, the library works, one reporter prints."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import __version__, authkey, lab, pipeline, pxe, spec
from .command import Command, Group, warn_later
from .errors import BuilderError
from .firmware import VmFirmware
from .image import Firmware, ImageFormat, image_name
from .model import Extra, Kind, Release, Role
from .repo import VALID_DAYS

ROLE = click.Choice([r.value for r in Role])
KIND = click.Choice([*(r.value for r in Role), *(e.value for e in Extra)])  # what build-deb builds
RELEASE = click.Choice([r.value for r in Release])


class ImageFirmware(click.Choice):
    """build-image --firmware: hybrid or bios; `uefi` is answered with what to take instead."""

    def __init__(self) -> None:
        super().__init__([f.value for f in Firmware])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "uefi":
            self.fail("'uefi': take hybrid (the default), which boots on UEFI, Secure Boot on, and on BIOS; "
                      "there is no UEFI-only layout", param, ctx)
        return super().convert(value, param, ctx)


def spec_option(f: Any) -> Any:
    return click.option("--spec", "spec_path", type=click.Path(path_type=Path, dir_okay=False),
                        help="cluster spec (YAML); default: the built-in reference cluster")(f)


def weak_option(f: Any) -> Any:
    return click.option("--allow-weak-auth", is_flag=True,
                        help="accept heartbeat auth md5/crc (weak; warns)")(f)


def authkey_option(f: Any) -> Any:
    return click.option("--authkey-file", type=click.Path(path_type=Path, dir_okay=False),
                        help="the cluster's heartbeat key (made by keygen); default: beside the spec")(f)


def force_option(f: Any) -> Any:
    return click.option("--force", is_flag=True,
                        help="write into an --out that is not empty and not lvs-builder's (its files are kept; "
                             "lvs-builder never removes what it did not write)")(f)


def key_change_option(f: Any) -> Any:
    return click.option("--key-change", is_flag=True,
                        help="build with keys that the directors running the previous lvs-cluster-key cannot "
                             "authenticate (a cluster reinstalled at once; rotate-key needs no such flag)")(f)


def _kind(value: str) -> Kind:
    return Extra(value) if value in {e.value for e in Extra} else Role(value)


def _load(spec_path: Path | None, release: str | None = None, allow_weak_auth: bool = False) -> pipeline.Loaded:
    loaded = pipeline.load_cluster(spec_path, release=release, allow_weak_auth=allow_weak_auth)
    warn_later(loaded.warnings)
    return loaded


@click.group(cls=Group)
@click.version_option(__version__)
@click.option("-v", "--verbose", is_flag=True, help="log every external command")
def cli(verbose: bool) -> None:
    """Turn one LVS cluster description into role packages, images and PXE trees."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@cli.command()
@spec_option
@weak_option
def validate(spec_path: Path | None, allow_weak_auth: bool) -> None:
    """Check a spec; one line per problem, exit 2 if any."""
    loaded = _load(spec_path, allow_weak_auth=allow_weak_auth)
    c = loaded.cluster
    click.echo(f"ok: {spec.read_source(spec_path).label}: cluster {c.name} ({c.release.value}), "
               f"{len(c.directors)} directors, {len(c.real_servers)} real servers, "
               f"{len(c.virtual_services)} virtual services")


@cli.command()
@spec_option
@weak_option
def show(spec_path: Path | None, allow_weak_auth: bool) -> None:
    """Print the validated spec with every default filled in."""
    click.echo(pipeline.normalized_yaml(_load(spec_path, allow_weak_auth=allow_weak_auth).cluster), nl=False)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False), default="cluster.yaml")
@click.option("--force", is_flag=True, help="overwrite an existing file")
def init(path: Path, force: bool) -> None:
    """Write a commented starter spec (the reference cluster) to PATH, and the new cluster's
    heartbeat key beside it (PATH with .authkey) unless there is one."""
    if path.exists() and not force:
        raise BuilderError(f"{path}: exists; pass --force to overwrite")
    key_path = authkey.default_path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(spec.reference_text(), encoding="utf-8")
    tmp.replace(path)
    click.echo(f"wrote {path}; edit it, then: lvs-builder validate --spec {path}")
    _make_key(key_path, keep=True)


def _make_key(path: Path, keep: bool) -> None:
    """The cluster key at `path`, created; an existing one kept (`keep`) or refused."""
    if keep and path.exists():
        click.echo(f"kept the cluster key {path} ({authkey.read(path).summary()})")
        return
    ring = authkey.create(path)
    click.echo(f"wrote the cluster key {path} ({authkey.fingerprint(ring.signing)}), mode 0600; back it up with "
               "the spec, never publish it; every lvs-cluster-key package is built from it")


@cli.command()
@spec_option
@authkey_option
@click.option("--if-missing", is_flag=True, help="keep an existing key (exit 0) instead of refusing")
def keygen(spec_path: Path | None, authkey_file: Path | None, if_missing: bool) -> None:
    """Create the cluster's heartbeat key (once per cluster): beside the spec, or --authkey-file.
    An existing key is never replaced; builds only read it."""
    _make_key(authkey_file or authkey.default_path(spec_path), keep=if_missing)


@cli.command("rotate-key")
@click.argument("step", type=click.Choice([s.value for s in authkey.RotateStep]))
@spec_option
@authkey_option
def rotate_key(step: str, spec_path: Path | None, authkey_file: Path | None) -> None:
    """One step of a key rotation on the cluster's key file: add (a new key listed; the old one
    still signs), sign (the new one signs), drop (the old one goes). After each, build
    lvs-cluster-key (build-deb cluster-key) and install it on both directors before the next;
    after sign's, run lvs-cluster-key-switch on both at the same moment (README)."""
    path = authkey_file or authkey.default_path(spec_path)
    hint = authkey.keygen_hint(spec_path, path)
    ring = authkey.rotate(path, authkey.RotateStep(step), hint)
    click.echo(f"{path}: {step}: {ring.summary()}; now: build-deb cluster-key"
               + (f" --spec {spec_path}" if spec_path else "")
               + f", then install lvs-cluster-key {ring.serial} on both directors"
               + {"add": ", then rotate-key sign",
                  "sign": ", then lvs-cluster-key-switch on both at the same moment, then rotate-key drop",
                  "drop": ": the rotation is done"}[step])


@cli.command()
@click.argument("role", type=click.Choice([*(r.value for r in Role), Extra.CLUSTER_KEY.value]))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="directory that becomes the node's file tree")
@click.option("--dry-run", is_flag=True, help="say what would change; write nothing")
@click.option("--diff", is_flag=True, help="show a unified diff of each change")
@spec_option
@authkey_option
@weak_option
@force_option
def render(role: str, out: Path, dry_run: bool, diff: bool, spec_path: Path | None,
           authkey_file: Path | None, allow_weak_auth: bool, force: bool) -> None:
    """Render every file a ROLE node gets into --out (staged, then renamed); cluster-key: the
    directors' heartbeat keys (/etc/ha.d/authkeys)."""
    loaded = _load(spec_path, allow_weak_auth=allow_weak_auth)
    changes = pipeline.render_role(loaded, _kind(role), out, authkey_file=authkey_file, dry_run=dry_run,
                                   force=force)
    for ch in changes:
        if ch.kind != "same":
            click.echo(f"{'would write' if dry_run else 'wrote'} {ch.kind:7} {ch.path}")
            if diff:
                click.echo(ch.diff, nl=False)
    same = sum(ch.kind == "same" for ch in changes)
    click.echo(f"{len(changes) - same} changed, {same} unchanged" + (" (dry run)" if dry_run else ""))


@click.command("build-deb", cls=Command)
@click.argument("roles", metavar="ROLE...", nargs=-1, required=True, type=KIND)
@spec_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("out"), show_default=True)
@click.option("--release", type=RELEASE, help="override the spec's Debian release")
@authkey_option
@key_change_option
@weak_option
@click.option("--lint/--no-lint", default=False, help="run lintian on the result (fails on warnings)")
def build_deb(roles: tuple[str, ...], spec_path: Path | None, out: Path, release: str | None,
              authkey_file: Path | None, key_change: bool, allow_weak_auth: bool, lint: bool) -> None:
    """Build the role meta-package(s) lvs-director (with lvs-cluster-key, the directors'
    heartbeat keys, which it needs) / lvs-realserver, lvs-cluster-key alone (a key rotation
    step), or lvs-apt-source (the sources entry of the spec's repository)."""
    loaded = _load(spec_path, release, allow_weak_auth)
    kinds = pipeline.with_keys([_kind(r) for r in dict.fromkeys(roles)])
    for built, verdict in pipeline.build_debs(loaded, kinds, out,
                                              authkey_file=authkey_file, lint=lint, key_change=key_change):
        click.echo(f"built {built.path}" + (" (lintian clean)" if verdict is not None else ""))


cli.add_command(build_deb)


@click.command("build-image", cls=Command)
@click.argument("role", type=ROLE)
@spec_option
@click.option("--format", "fmt", type=click.Choice([f.value for f in ImageFormat]), default="qcow2",
              show_default=True)
@click.option("--firmware", type=ImageFirmware(), default=None,
              help="hybrid: one GPT image that boots on UEFI (Secure Boot on: Debian's signed shim and GRUB) "
              "and on BIOS; bios: MBR, BIOS only; default: the spec's images.firmware (hybrid)")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("out"), show_default=True)
@click.option("--release", type=RELEASE, help="override the spec's Debian release")
@authkey_option
@key_change_option
@weak_option
def build_image(role: str, spec_path: Path | None, fmt: str, firmware: str | None, out: Path, release: str | None,
                authkey_file: Path | None, key_change: bool, allow_weak_auth: bool) -> None:
    """Build a bootable disk image for ROLE: its .deb first, then diskimage-builder."""
    loaded = _load(spec_path, release, allow_weak_auth)
    name = image_name(loaded.cluster, Role(role))
    start = time.monotonic()
    started: list[str] = []

    def progress(step: str) -> None:
        if not started:  # the first step: tools checked, the .deb built, the log open
            started.append(step)
            click.echo(f"building {name}.{fmt}: full log in {out / f'{name}.{fmt}.log'}", err=True)
        click.echo(f"  {time.monotonic() - start:6.0f}s  {step}", err=True)

    debs, built = pipeline.build_image(loaded, Role(role), out, ImageFormat(fmt),
                                       firmware=Firmware(firmware) if firmware else None,
                                       authkey_file=authkey_file, key_change=key_change, on_step=progress)
    for d in debs:
        click.echo(f"built {d.path}" + (" (the directors' heartbeat keys: owner only, never publish it)"
                                        if d.package == Extra.CLUSTER_KEY.package else ""))
    click.echo(f"built {built.image} ({built.firmware.value}; {built.image.stat().st_size / 2**20:.0f} MiB, "
               f"{built.seconds:.0f} s), "
               f"kernel {built.kernel.name}, initrd {built.initrd.name}")


cli.add_command(build_image)


@cli.command("lab")
@spec_option
@click.option("--images", type=click.Path(path_type=Path, file_okay=False), default=Path("out"), show_default=True,
              help="where the role images are (built there first if missing or older than the spec)")
@click.option("--no-build", is_flag=True, help="never build images; fail if they are missing or stale")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="VM consoles, client log, report; default: IMAGES/lab")
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(["none", *lab.SCENARIO_KEYS]),
              help="run only these failure scenarios (repeatable; 'none': only the functional checks); "
                   "default: every one but "
                   + ", ".join(k for k in lab.SCENARIO_KEYS if k not in lab.DEFAULT_SCENARIO_KEYS))
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON instead of a table")
@click.option("--pxe", "pxe_boot", is_flag=True,
              help="boot every node diskless from the PXE tree, served by `pxe serve` in the namespace")
@click.option("--pxe-tree", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="the tree for --pxe; default: IMAGES/pxe (made from the images when missing or stale)")
@click.option("--firmware", "vm_firmware", type=click.Choice([f.value for f in VmFirmware]), default=None,
              help="boot every VM through this firmware and the image's boot loader (the PXE tree's, with --pxe): "
                   "bios (SeaBIOS), uefi (OVMF), uefi-secure (OVMF with Secure Boot on, Microsoft's keys, as "
                   "servers ship); default: the images' kernel booted directly (bios with --pxe)")
@click.option("--keepalived-peer", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="boot the directors from this image instead: bench/keepalived's hand-made keepalived "
                   "directors of the reference cluster (bench/run builds it), for the side-by-side figures")
@click.option("--upgrade", is_flag=True,
              help="after the scenarios, publish the spec's next version (build-repo, served in the namespace) "
                   "and run the rolling upgrade: standby director, handover, the other, each real server")
@click.option("--upgrade-to", "upgrade_to", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="with --upgrade: roll out this spec (at the next version) instead, the same cluster with "
                   "other heartbeat settings, e.g. docs/examples/two-paths.yaml's second path; the lab wires "
                   "what either needs at boot")
@click.option("--then-scenario", "then_scenarios", multiple=True, type=click.Choice(lab.SCENARIO_KEYS),
              help="with --upgrade: after the upgrade (and the key rotation), put the upgraded cluster through "
                   "this scenario too (repeatable; its row is keyed SCENARIO@VERSION)")
@click.option("--rotate-key", is_flag=True,
              help="then rotate the cluster key (add, sign, drop: lvs-cluster-key on both directors each step) "
                   "to a new key of the lab's own; the spec's key file is left as it is")
@authkey_option
@key_change_option
@weak_option
def lab_cmd(spec_path: Path | None, images: Path, no_build: bool, workdir: Path | None, scenarios: tuple[str, ...],
            as_json: bool, pxe_boot: bool, pxe_tree: Path | None, vm_firmware: str | None,
            keepalived_peer: Path | None, upgrade: bool,
            upgrade_to: Path | None, then_scenarios: tuple[str, ...], rotate_key: bool, authkey_file: Path | None,
            key_change: bool, allow_weak_auth: bool) -> None:
    """Boot the cluster in VMs inside a private network namespace and put it through the
    tutorial's checks and its five failure tests (power loss and, for directors, a clean stop)."""
    if keepalived_peer is not None and (spec_path is not None or pxe_boot):
        raise click.UsageError("--keepalived-peer: the peer is configured by hand for the built-in reference "
                               "cluster, booted from disk; drop --spec and --pxe")
    if keepalived_peer is not None and (upgrade or rotate_key):
        raise click.UsageError("--keepalived-peer: its directors have no role package to upgrade and no "
                               "lvs-cluster-key; drop --upgrade and --rotate-key")
    if (upgrade_to is not None or then_scenarios) and not upgrade:
        raise click.UsageError("--upgrade-to and --then-scenario go with --upgrade")
    loaded = _load(spec_path, None, allow_weak_auth)
    firmware = VmFirmware(vm_firmware) if vm_firmware else None
    if firmware is not None and (unnamed := [n.name for n, _ in loaded.cluster.nodes if not n.mac]):
        # through a boot loader there is no lvs.node= on the command line: the MAC says who it is
        raise BuilderError(f"--firmware {firmware.value}: {', '.join(unnamed)} ha{'s' if len(unnamed) == 1 else 've'} "
                           "no mac in the spec; a node booted through its firmware is known by its MAC")
    if firmware is not None and firmware.uefi and loaded.cluster.images.firmware is Firmware.BIOS:
        raise BuilderError(f"--firmware {firmware.value}: the spec's images are bios (images.firmware), which "
                           "boot on BIOS only; set images.firmware: hybrid, or boot them with --firmware bios")
    new = None
    if upgrade:  # what the upgrade rolls out, checked before anything is built
        new = (pipeline.upgrade_target(loaded.cluster, _load(upgrade_to, None, allow_weak_auth).cluster,
                                       str(upgrade_to)) if upgrade_to is not None else
               pipeline.upgraded(loaded.cluster))
    start = time.monotonic()

    def progress(msg: str) -> None:
        click.echo(f"[{time.monotonic() - start:6.1f}s] {msg}", err=True)

    tree = None
    if pxe_boot:
        tree = pipeline.lab_pxe_tree(loaded, images, pxe_tree or images / "pxe", build=not no_build,
                                     authkey_file=authkey_file, key_change=key_change, on_step=progress)
        found = {}
    else:
        found = pipeline.lab_images(loaded, images, build=not no_build, authkey_file=authkey_file,
                                    key_change=key_change, on_step=progress,
                                    roles=(Role.REALSERVER,) if keepalived_peer else (Role.DIRECTOR, Role.REALSERVER))
        if keepalived_peer is not None:
            found[Role.DIRECTOR] = keepalived_peer
    chosen = [s for s in lab.SCENARIOS if (s.key in scenarios if scenarios else s.default)]
    workdir = workdir or images / ("lab-pxe" if pxe_boot else "lab-keepalived" if keepalived_peer else "lab")
    repo_dir = None
    if new is not None:
        from .repo import REPO_PORT

        url = f"http://{lab.client_address(loaded.cluster, new).ip}:{REPO_PORT}/"
        progress(f"publishing {new.package.version} " + (f"of {upgrade_to} " if upgrade_to else "")
                 + f"for the upgrade: {workdir / 'repo'} (signed by a throw-away key, served at {url})")
        repo_dir = workdir / "repo"
        pipeline.lab_upgrade_repo(loaded, repo_dir, url, new)
    rotation: list[tuple[authkey.RotateStep, Path]] = []
    if rotate_key:
        rotation = pipeline.lab_rotation(loaded, workdir / "rotation", authkey_file=authkey_file, cluster=new)
        progress(f"then a key rotation: lvs-cluster-key {', '.join(p.name for _, p in rotation)} in "
                 f"{workdir / 'rotation'} (a new key of the lab's own; the spec's key file is left as it is)")
    then = tuple(s for s in lab.SCENARIOS if s.key in then_scenarios)
    rollout = lab.Rollout(repo_dir, new, tuple(rotation), then) if upgrade or rotate_key else None
    report = lab.run_lab(loaded.cluster, found, workdir, chosen, progress, pxe_tree=tree,
                         peer=keepalived_peer is not None, rollout=rollout, firmware=firmware)
    (workdir / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
    (workdir / "report.md").write_text(report.table() + "\n")
    click.echo(json.dumps(report.to_json(), indent=1) if as_json else report.table())
    if not report.ok:
        sys.exit(1)


@click.command("build-pxe", cls=Command)
@spec_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="the tree to make (replaced atomically)")
@click.option("--images", type=click.Path(path_type=Path, file_okay=False), default=Path("out"), show_default=True,
              help="where the role images are (built there first if missing or older than the spec)")
@click.option("--no-build", is_flag=True, help="never build images; fail if they are missing or stale")
@authkey_option
@key_change_option
@weak_option
@force_option
def build_pxe(spec_path: Path | None, out: Path, images: Path, no_build: bool, authkey_file: Path | None,
              key_change: bool, allow_weak_auth: bool, force: bool) -> None:
    """Make a PXE boot tree: pxelinux entries by MAC, the role images' kernels and root
    filesystems, dnsmasq configuration; `lvs-builder pxe serve --dir OUT` serves it."""
    pxe.claim(out, force)  # before any image is built
    loaded = _load(spec_path, None, allow_weak_auth)
    start = time.monotonic()

    def progress(msg: str) -> None:
        click.echo(f"  {time.monotonic() - start:6.0f}s  {msg}", err=True)

    manifest = pipeline.build_pxe(loaded, images, out, build=not no_build, authkey_file=authkey_file,
                                  key_change=key_change, on_step=progress, force=force)
    for role, info in manifest["roles"].items():
        sizes = ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in info["bytes"].items())
        click.echo(f"{role}: {sizes}")
    for name, node in manifest["nodes"].items():
        click.echo(f"{name}: {node['role']}, MAC {node['mac']} -> {node['entry']}")
    click.echo(f"built {out} in {time.monotonic() - start:.0f} s; serve it: "
               f"lvs-builder pxe serve --dir {out} --interface IF")


cli.add_command(build_pxe)


def _say(line: str) -> None:
    """A foreground server's log line, with the time, on stderr."""
    click.echo(f"{time.strftime('%H:%M:%S')} {line}", err=True)


@cli.group("pxe", cls=Group)
def pxe_group() -> None:
    """Serve a tree build-pxe made."""


@pxe_group.command("serve")
@click.option("--dir", "tree", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="the tree build-pxe made")
@click.option("--interface", required=True, help="the provisioning segment's interface on this machine")
@click.option("--proxy", is_flag=True,
              help="proxy DHCP: another DHCP server hands out addresses, dnsmasq only the boot file")
def pxe_serve(tree: Path, interface: str, proxy: bool) -> None:
    """Run dnsmasq (DHCP + TFTP) and the HTTP server in the foreground until Ctrl-C."""
    from . import pxe

    pxe.serve(tree, interface, proxy=proxy, say=_say)


@click.command("build-repo", cls=Command)
@spec_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="the repository (created, or the new version published into it)")
@click.option("--sign-key", metavar="KEYID", default=None,
              help="GnuPG secret key to sign the Release with (InRelease, Release.gpg)")
@click.option("--insecure", is_flag=True,
              help="publish UNSIGNED (no --sign-key): the sources entry says 'Trusted: yes' and the nodes "
                   "install whatever that URL serves them")
@click.option("--valid-days", type=click.IntRange(1, 3650), default=VALID_DAYS, show_default=True,
              help="the Release's Valid-Until: apt refuses the repository once it is older; publish again before")
@click.option("--url", default=None,
              help="where the nodes reach the repository [default: http://PROVISIONING-SERVER:8080/]")
@authkey_option
@key_change_option
@weak_option
@force_option
def build_repo(spec_path: Path | None, out: Path, sign_key: str | None, insecure: bool, valid_days: int,
               url: str | None,
               authkey_file: Path | None, key_change: bool, allow_weak_auth: bool, force: bool) -> None:
    """Publish the spec's role packages into an apt repository, with its sources entry."""
    from . import repo

    repo.claim(out, force)  # before any package is built
    loaded = _load(spec_path, None, allow_weak_auth)
    if url and loaded.cluster.repository is not None and url != loaded.cluster.repository.url:
        raise BuilderError(f"build-repo: --url {url}: the spec's repository.url ({loaded.cluster.repository.url}) "
                           "is what the role packages' sources entry names; change the spec, or drop --url")
    url = url or repo.default_url(loaded.cluster)
    if not sign_key and not insecure:
        raise BuilderError("build-repo: --sign-key: required (a GnuPG secret key the nodes will trust); "
                           "an unsigned repository only with --insecure")
    if sign_key and insecure:
        raise BuilderError("build-repo: --insecure: the repository is signed (--sign-key); drop one of them")
    if not sign_key:
        click.echo("warning: build-repo --insecure: the repository is unsigned, and its sources entry "
                   "says 'Trusted: yes': nodes install whatever that URL serves them", err=True)
    with pipeline.private_tmp(out.parent) as tmp:
        debs = [b.path for b, _ in pipeline.build_debs(loaded, pipeline.published(loaded.cluster), tmp,
                                                       authkey_file=authkey_file, key_change=key_change,
                                                       previous=out)]
        built = repo.build(loaded.cluster, debs, out, url, sign_key, spec_key=pipeline.repo_key(loaded),
                           valid_days=valid_days, force=force)
    for package, version in built.packages:
        click.echo(f"{package} {version}")
    click.echo(f"built {out}" + (f", signed by {built.signed_by}" if built.signed_by else ", UNSIGNED")
               + f"; nodes: /etc/apt/sources.list.d/{built.sources.name} (from {built.sources})")


cli.add_command(build_repo)


@cli.group("repo", cls=Group)
def repo_group() -> None:
    """Serve a repository build-repo made."""


@repo_group.command("serve")
@click.option("--dir", "root", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="the repository build-repo made")
@click.option("--address", default=None,
              help="the address to listen on [default: the host of the URL the repository was published for]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="[default: the port of that URL]")
@click.option("--director", "directors", multiple=True, metavar="ADDR",
              help="another address of a director (lvs-director_*.deb, the directors' configuration, goes to the "
                   "spec's directors' addresses and these only)")
def repo_serve(root: Path, address: str | None, port: int | None, directors: tuple[str, ...]) -> None:
    """Serve the repository over HTTP in the foreground until Ctrl-C (for small sites)."""
    from . import repo

    repo.serve(root, address, port, say=_say, directors=directors)


def main() -> None:
    cli(prog_name="lvs-builder")


def build_deb_main() -> None:
    build_deb(prog_name="build-deb")


def build_image_main() -> None:
    build_image(prog_name="build-image")


def build_pxe_main() -> None:
    build_pxe(prog_name="build-pxe")


def build_repo_main() -> None:
    build_repo(prog_name="build-repo")
