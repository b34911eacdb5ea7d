"""PXE rollouts: a network-boot tree derived from the role images, and what serves it.

    DIR/tftp/lpxelinux.0, ldlinux.c32      Debian's pxelinux (the HTTP-capable one), over TFTP
    DIR/tftp/pxelinux.cfg/01-<mac>         one per node: its role, its name on the command line
    DIR/tftp/pxelinux.cfg/default          every other machine: told why it stays out
    DIR/tftp/bootx64.efi, grubx64.efi      UEFI machines: Debian's signed shim and GRUB network image
    DIR/tftp/grub/grub.cfg, nodes/<mac>.cfg   ... GRUB's entries: the same nodes, the same strangers
    DIR/http/<role>/vmlinuz, initrd.img    the role image's own kernel and initramfs, over HTTP
    DIR/http/<role>/filesystem.squashfs    the role image's root filesystem, for live-boot
    DIR/dnsmasq-static.conf, dnsmasq-proxy.conf   DHCP (static leases, or proxy) and TFTP
    DIR/pxe.json                           what the tree serves and was made from

A diskless node fetches the squashfs into RAM (live-boot's fetch=) and runs from it with a
tmpfs overlay: once booted it depends on no server, which a load balancer must not. The root
filesystem is the disk image's, byte for byte, except /etc/fstab's line for the disk's root.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import writer
from .deb import KEY_MODE
from .errors import BuilderError, SpecError
from .image import CONSOLE_CMDLINE, Firmware, firmware_of
from .model import Cluster, DhcpMode, Node, Role, pxe_problems
from .render import environment
from .run import require, run
from .serve import Policy, http_server
from .writer import replace_dir, staging

# Debian's pxelinux and syslinux-common put them here.
PXELINUX = Path("/usr/lib/PXELINUX/lpxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
# The default entry prints why a stranger stays out with cat.c32 (which needs libcom32.c32).
COM32 = (Path("/usr/lib/syslinux/modules/bios/cat.c32"), Path("/usr/lib/syslinux/modules/bios/libcom32.c32"))
SQUASHFS = "filesystem.squashfs"
MANIFEST = "pxe.json"
# A diskless node holds its root filesystem in RAM: the squashfs plus what it writes.
PXE_MEMORY_MIB = 1536


def pxe_config_name(mac: str) -> str:
    """pxelinux's per-host file: ARP type 01, then the MAC with dashes."""
    return "01-" + mac.lower().replace(":", "-")


def grub_config_name(mac: str) -> str:
    """GRUB's per-host file: its $net_default_mac (lower case, colons)."""
    return f"{mac.lower()}.cfg"


# UEFI network boot with Secure Boot on: Debian's shim (signed by Microsoft) as the file the
# firmware loads, Debian's signed GRUB network image beside it under the name shim loads. Taken
# from the role image (shim-signed and grub-efi-amd64-signed of a hybrid image: the release the
# kernel is of); its embedded prefix is /grub, where GRUB reads grub.cfg.
EFI_LOADERS = {"bootx64.efi": "usr/lib/shim/shimx64.efi.signed",
               "grubx64.efi": "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"}


def base_url(cluster: Cluster) -> str:
    pv = cluster.provisioning
    assert pv is not None
    return f"http://{pv.server}" + ("" if pv.http_port == 80 else f":{pv.http_port}")


def kernel_cmdline(cluster: Cluster, role: Role, node: Node) -> str:
    """live-boot fetches the role's root filesystem into RAM; the initramfs configures the
    interface pxelinux booted from (BOOTIF, from IPAPPEND 2) by DHCP."""
    return (f"boot=live fetch={base_url(cluster)}/{role.value}/{SQUASHFS} ip=dhcp "
            f"{CONSOLE_CMDLINE} lvs.node={node.name}")


def check_ready(cluster: Cluster) -> None:
    problems = pxe_problems(cluster)
    if problems:
        raise SpecError(problems)


def uefi_capable(images: list[Path]) -> bool:
    """Do these role images carry Debian's signed shim and GRUB (hybrid images)? A tree built
    from BIOS images boots BIOS machines only."""
    return all(firmware_of(i) is Firmware.HYBRID for i in images)


def render_configs(cluster: Cluster, uefi: bool = True) -> dict[str, str]:
    """Every text file of the tree, keyed by its path in the tree (with `uefi`, GRUB's for
    UEFI machines too)."""
    check_ready(cluster)
    env = environment()
    pv = cluster.provisioning
    assert pv is not None
    ctx: dict[str, Any] = {"c": cluster, "url": base_url(cluster), "uefi": uefi,
                           "grub_url": f"(http,{pv.server}" + ("" if pv.http_port == 80 else f":{pv.http_port}") + ")",
                           "nodes": [{"node": n, "role": r.value, "cmdline": kernel_cmdline(cluster, r, n)}
                                     for n, r in cluster.nodes]}
    files = {rel: env.get_template(f"pxe/{rel.removeprefix('tftp/')}.j2").render(ctx)
             for rel in ("tftp/pxelinux.cfg/default", "tftp/pxelinux.cfg/not-a-node.txt",
                         *(("tftp/grub/grub.cfg",) if uefi else ()))}
    node_tpl = env.get_template("pxe/pxelinux.cfg/node.j2")
    grub_tpl = env.get_template("pxe/grub/node.cfg.j2")
    for entry in ctx["nodes"]:
        assert entry["node"].mac is not None
        files[f"tftp/pxelinux.cfg/{pxe_config_name(entry['node'].mac)}"] = node_tpl.render(ctx, **entry)
        if uefi:
            files[f"tftp/grub/nodes/{grub_config_name(entry['node'].mac)}"] = grub_tpl.render(ctx, **entry)
    for mode in DhcpMode:
        files[f"dnsmasq-{mode.value}.conf"] = env.get_template("pxe/dnsmasq.conf.j2").render(ctx, mode=mode.value)
    return files


# The root partition's type: MBR's "Linux" (a BIOS image), GPT's "Linux filesystem" (a hybrid
# one, beside its EFI system partition and its BIOS boot partition).
LINUX_PARTITION_TYPES = ("83", "0FC63DAF-8483-4772-8E79-3D69D8477DE4")


def _partition_offset(raw: Path) -> int:
    table = json.loads(run(["sfdisk", "--json", str(raw)]).stdout)["partitiontable"]
    roots = [p for p in table["partitions"] if str(p.get("type", "")).upper() in LINUX_PARTITION_TYPES]
    if len(roots) != 1:
        raise BuilderError(f"{raw}: expected one root partition (Linux filesystem) in the image, found {len(roots)}")
    return int(roots[0]["start"]) * int(table.get("sectorsize", 512))


# zstd: a third faster to boot under emulation than xz, for ~10% more bytes to fetch. At
# zstd's own default level (3; mksquashfs's is 15): the director's root in 12 s, not 80 s,
# 7 % bigger (bench/run --only pxe).
SQUASHFS_COMPRESSION = ("-comp", "zstd", "-Xcompression-level", "3")


def root_squashfs(image: Path, dest: Path, work: Path, compression: tuple[str, ...] = SQUASHFS_COMPRESSION,
                  take: Callable[[Path], None] = lambda root: None) -> None:
    """The image's root filesystem as a squashfs for live-boot: read through a loop mount of
    the image's partition (no device-mapper needed), copied, the disk's lines taken out of
    /etc/fstab (its root, a hybrid image's EFI system partition: a diskless node has no such
    disk, and systemd would wait for it), compressed. `take` sees the root first (the UEFI
    loaders are copied out of it)."""
    raw, mnt, root = work / "image.raw", work / "mnt", work / "root"
    run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)])
    mnt.mkdir()
    run(["mount", "-o", f"ro,loop,offset={_partition_offset(raw)}", str(raw), str(mnt)])
    try:
        run(["cp", "-a", f"{mnt}/.", str(root)])
    finally:
        run(["umount", str(mnt)])
        raw.unlink()
    fstab = root / "etc/fstab"
    if fstab.exists():
        kept = [line for line in fstab.read_text().splitlines(keepends=True)
                if line.lstrip().startswith("#") or len(line.split()) < 2 or line.split()[1] not in ("/", "/boot/efi")]
        fstab.write_text("".join(kept))
    take(root)
    run(["mksquashfs", str(root), str(dest), *compression, "-noappend", "-no-progress", "-quiet"])
    shutil.rmtree(root)


@dataclass(frozen=True)
class RoleFiles:
    image: Path
    kernel: Path
    initrd: Path


def check_tools() -> None:
    for tool, pkg in (("qemu-img", "qemu-utils"), ("sfdisk", "fdisk"), ("mksquashfs", "squashfs-tools"),
                      ("mount", "mount")):
        require(tool, pkg)
    for path, pkg in ((PXELINUX, "pxelinux"), (LDLINUX, "syslinux-common"), *((m, "syslinux-common") for m in COM32)):
        if not path.exists():
            raise BuilderError(f"{path}: missing; install {pkg} (apt install {pkg})")


def claim(out: Path, force: bool = False) -> None:
    """Refuse an --out that is neither new, empty nor a PXE tree of ours (writer.claim)."""
    writer.claim(out, force, legacy=MANIFEST)


def build_tree(cluster: Cluster, roles: dict[Role, RoleFiles], out: Path, force: bool = False) -> dict[str, Any]:
    """Build the whole tree in a staging directory beside `out`, then rename it into place."""
    check_tools()
    uefi = uefi_capable([f.image for f in roles.values()])
    configs = render_configs(cluster, uefi)  # refuses a spec it cannot roll out
    assert cluster.provisioning is not None
    with staging(out) as scratch:
        tmp = scratch / "tree"
        tftp = tmp / "tftp"
        (tftp / "pxelinux.cfg").mkdir(parents=True)
        shutil.copy(PXELINUX, tftp / PXELINUX.name)
        for module in (LDLINUX, *COM32):
            shutil.copy(module, tftp / module.name)
        for rel, text in configs.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        manifest: dict[str, Any] = {"cluster": cluster.name, "release": cluster.release.value,
                                    "server": str(cluster.provisioning.server),
                                    "http_port": cluster.provisioning.http_port, "url": base_url(cluster),
                                    "dhcp": cluster.provisioning.dhcp.value,
                                    "roles": {}, "nodes": {}}
        def efi_loaders(root: Path) -> None:
            for name, rel in EFI_LOADERS.items():
                if uefi and (root / rel).is_file() and not (tftp / name).exists():
                    shutil.copy(root / rel, tftp / name)

        for role, files in roles.items():
            d = tmp / "http" / role.value
            d.mkdir(parents=True)
            shutil.copy(files.kernel, d / "vmlinuz")
            shutil.copy(files.initrd, d / "initrd.img")
            with tempfile.TemporaryDirectory(dir=scratch, prefix="work-") as work:
                root_squashfs(files.image, d / SQUASHFS, Path(work), take=efi_loaders)
            manifest["roles"][role.value] = {
                "image": str(files.image),
                "bytes": {p.name: p.stat().st_size for p in sorted(d.iterdir())},
            }
        missing = [name for name in EFI_LOADERS if not (tftp / name).exists()]
        if uefi and missing:
            raise BuilderError(f"{', '.join(str(f.image) for f in roles.values())}: hybrid images without "
                               f"{', '.join(EFI_LOADERS[m] for m in missing)}; build them again (build-image)")
        manifest["uefi"] = uefi
        for n, r in cluster.nodes:
            assert n.mac is not None
            manifest["nodes"][n.name] = {"role": r.value, "mac": n.mac.lower(), "address": str(n.address),
                                         "entry": f"tftp/pxelinux.cfg/{pxe_config_name(n.mac)}",
                                         **({"uefi_entry": f"tftp/grub/nodes/{grub_config_name(n.mac)}"}
                                            if uefi else {})}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        for dirpath, _, names in os.walk(tmp):
            for name in names:
                path = os.path.join(dirpath, name)
                # the director's root filesystem carries the cluster key: its owner only (pxe serve
                # runs as that owner); the rest is what dnsmasq and HTTP hand anyone on the segment
                os.chmod(path, KEY_MODE if Path(path).is_relative_to(tmp / "http" / Role.DIRECTOR.value) else 0o644)
        replace_dir(tmp, out, force, legacy=MANIFEST)
    return manifest


def read_manifest(tree: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((tree / MANIFEST).read_text())
    except FileNotFoundError:
        raise BuilderError(f"{tree}: no {MANIFEST}; not a tree build-pxe made (build-pxe --out {tree})") from None
    return data


# -- serving ---------------------------------------------------------------------------

DHCP_PROBE_SECONDS = 8.0  # dnsmasq pings an address for ~3 s before it offers it; others are slower


def other_dhcp_servers(interface: str, timeout: float = DHCP_PROBE_SECONDS) -> list[str]:
    """Who answers a DHCPDISCOVER on `interface` (sent from its own MAC, broadcast flag set):
    the addresses of the DHCP servers already on that segment."""
    try:
        mac = bytes.fromhex(Path(f"/sys/class/net/{interface}/address").read_text().strip().replace(":", ""))
    except OSError:
        raise BuilderError(f"{interface}: no such interface") from None
    xid = random.getrandbits(32)
    packet = (struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) + bytes(16) + mac.ljust(16, b"\0")
              + bytes(192) + bytes.fromhex("63825363")
              + bytes([53, 1, 1, 55, 3, 1, 3, 54, 255]))
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        s.bind(("0.0.0.0", 68))
        s.sendto(packet, ("255.255.255.255", 67))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, (sender, _) = s.recvfrom(4096)
            except TimeoutError:
                break
            if len(data) < 240 or data[0] != 2 or struct.unpack("!I", data[4:8])[0] != xid:
                continue
            server = _dhcp_option(data[240:], 54)
            who = ".".join(str(b) for b in server) if server and len(server) == 4 else sender
            if who not in found:
                found.append(who)
    return found


def _dhcp_option(options: bytes, code: int) -> bytes | None:
    i = 0
    while i < len(options) and options[i] != 255:
        if options[i] == 0:
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        if options[i] == code:
            return options[i + 2:i + 2 + length]
        i += 2 + length
    return None


def interface_addresses(interface: str) -> list[str]:
    out = run(["ip", "-j", "-4", "address", "show", "dev", interface], check=False)
    if out.returncode != 0:
        raise BuilderError(f"{interface}: no such interface")
    return [a["local"] for link in json.loads(out.stdout or "[]") for a in link.get("addr_info", [])]


def policy(manifest: dict[str, Any], mode: str) -> Policy:
    """The director's files to the directors' addresses only (in proxy mode too: the site's DHCP
    server must lease each director its spec address); the rest to the nodes' addresses in static
    mode, to anyone in proxy mode."""
    nodes = manifest["nodes"].values()
    return Policy((f"{Role.DIRECTOR.value}/*",),
                  frozenset(n["address"] for n in nodes if n["role"] == Role.DIRECTOR.value),
                  frozenset(n["address"] for n in nodes) if mode == "static" else None)


def _run_dir(tree: Path) -> Path:
    """dnsmasq's run directory. dnsmasq opens its sockets, lease and pid file as root, then runs
    as DNSMASQ_USER: that user reads the TFTP files (pxelinux and the boot entries, no key) from
    this copy, which it can reach (the tree may sit in a directory only its owner enters)."""
    rundir = Path(tempfile.mkdtemp(prefix="lvs-builder-pxe-"))
    tftp = rundir / "tftp"
    try:
        shutil.copytree(tree / "tftp", tftp)
        for dirpath, _, names in os.walk(tftp):
            os.chmod(dirpath, 0o755)
            for name in names:
                os.chmod(os.path.join(dirpath, name), 0o644)
        os.chmod(rundir, 0o711)
    except OSError as e:
        shutil.rmtree(rundir, ignore_errors=True)
        raise BuilderError(f"pxe serve: copying {tree / 'tftp'} for dnsmasq: {e.strerror or e}") from None
    return rundir


DNSMASQ_USER = ("nobody", "nogroup")  # Debian's dnsmasq-base makes no user of its own
READY = "ready:"  # what `serve` says once dnsmasq and HTTP answer (the lab and tests wait for it)


def serve(tree: Path, interface: str, *, proxy: bool = False, say: Callable[[str], None] = print,
          ready: Callable[[], None] = lambda: None) -> int:
    """Serve a tree on `interface` in the foreground: dnsmasq (DHCP + TFTP) and HTTP, until
    dnsmasq exits or SIGINT/SIGTERM; both are stopped by PID on the way out."""
    manifest = read_manifest(tree)
    dnsmasq = require("dnsmasq", "dnsmasq-base")
    server, url = manifest["server"], manifest["url"]
    if server not in interface_addresses(interface):
        raise BuilderError(f"{interface} has no address {server}, the server this tree was built for "
                           f"(provisioning.server): add it (ip address add {server}/PREFIX dev {interface}) "
                           "or build the tree for this machine's address")
    mode = "proxy" if proxy else manifest["dhcp"]
    if mode == "static":
        say(f"listening {DHCP_PROBE_SECONDS:.0f} s on {interface} for another DHCP server")
        others = other_dhcp_servers(interface)
        if others:
            raise BuilderError(f"{interface}: another DHCP server already answers here ({', '.join(others)}); "
                               "two would hand out conflicting leases: serve with --proxy (boot information "
                               "only, that server keeps the addresses)")
    port = int(manifest["http_port"])
    httpd = http_server(tree / "http", server, port, policy(manifest, mode), say, "pxe serve")
    try:
        rundir = _run_dir(tree)
    except BuilderError:
        httpd.server_close()
        raise
    tftp = rundir / "tftp"
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    argv = [dnsmasq, "--keep-in-foreground", "--log-facility=-", f"--conf-file={tree / f'dnsmasq-{mode}.conf'}",
            f"--interface={interface}", f"--tftp-root={tftp}", f"--dhcp-leasefile={rundir / 'leases'}",
            f"--pid-file={rundir / 'dnsmasq.pid'}", f"--user={DNSMASQ_USER[0]}", f"--group={DNSMASQ_USER[1]}"]
    say(f"serving {tree} on {interface}: DHCP ({mode}) and TFTP by dnsmasq, HTTP at {url}/ "
        + ("for the nodes' addresses only" if mode == "static" else "for anyone")
        + " (the director's root filesystem for the directors' only); Ctrl-C stops")
    say("$ " + " ".join(argv))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # dnsmasq writes its pid file once its sockets are bound: from then on it answers.
        pidfile = rundir / "dnsmasq.pid"
        while not stop.is_set() and proc.poll() is None and not pidfile.exists():
            stop.wait(0.1)
        if proc.poll() is None and not stop.is_set():
            say(f"{READY} dnsmasq (pid {proc.pid}) and HTTP on {interface} ({server})")
            ready()
        while not stop.is_set() and proc.poll() is None:
            stop.wait(0.5)
    finally:
        for sig, handler_ in previous.items():
            signal.signal(sig, handler_)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(rundir, ignore_errors=True)
    code = proc.returncode
    if not stop.is_set():
        raise BuilderError(f"dnsmasq exited ({code}) on its own; its log is above")
    say("stopped dnsmasq and the HTTP server")
    return 0
