"""PXE rollouts: `build-pxe` makes the tree, `lvs-builder pxe serve` serves it, diskless VMs
boot from it inside a network namespace this test creates (a bridge and taps in it, no route
out). Everything started is stopped by PID, also when a check fails."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import pxe, spec
from builder.cli import cli
from builder.firmware import VmFirmware
from builder.netns import BRIDGE, Netns
from builder.qemu import Vm

from .conftest import REPO, PxeTree, http_status, need_tool, write_spec

BOOT_TIMEOUT = 900  # network boot + a squashfs fetched into RAM, under emulation
LVS_BUILDER = str(Path(sys.executable).parent / "lvs-builder")


# -- fast: the entries and the configuration, from the spec ----------------------------------

def test_each_node_gets_an_entry_by_mac_and_every_other_machine_is_told_why_not() -> None:
    cluster, _ = spec.load(None)
    files = pxe.render_configs(cluster)
    entries = sorted(k for k in files if k.startswith("tftp/pxelinux.cfg/01-"))
    assert entries == ["tftp/pxelinux.cfg/01-52-54-00-00-01-01", "tftp/pxelinux.cfg/01-52-54-00-00-01-02",
                       "tftp/pxelinux.cfg/01-52-54-00-00-01-03", "tftp/pxelinux.cfg/01-52-54-00-00-01-04"]
    loadb2 = files["tftp/pxelinux.cfg/01-52-54-00-00-01-04"]
    assert "  KERNEL http://192.168.1.10/director/vmlinuz\n" in loadb2
    assert "  INITRD http://192.168.1.10/director/initrd.img\n" in loadb2
    assert ("  APPEND boot=live fetch=http://192.168.1.10/director/filesystem.squashfs ip=dhcp console=tty0 "
            "console=ttyS0,115200 net.ifnames=0 lvs.node=loadb2\n") in loadb2
    assert "  IPAPPEND 2\n" in loadb2  # BOOTIF: the initramfs configures the NIC it booted from
    default = files["tftp/pxelinux.cfg/default"]
    assert "  COM32 cat.c32\n  APPEND pxelinux.cfg/not-a-node.txt\n" in default
    assert "KERNEL" not in default and "  LOCALBOOT -1\n" in default
    why = files["tftp/pxelinux.cfg/not-a-node.txt"]
    assert why.startswith("lvs-builder: this machine's MAC is in no node of the reference cluster's spec, so it "
                          "does not join the cluster.\n")
    assert "loadb1 (52:54:00:00:01:03)" in why


def test_a_uefi_machine_gets_grub_entries_for_the_same_nodes_and_the_same_words_for_strangers() -> None:
    cluster, _ = spec.load(None)
    files = pxe.render_configs(cluster)
    entries = sorted(k for k in files if k.startswith("tftp/grub/nodes/"))
    assert entries == [f"tftp/grub/nodes/52:54:00:00:01:0{i}.cfg" for i in (1, 2, 3, 4)]
    loadb2 = files["tftp/grub/nodes/52:54:00:00:01:04.cfg"]
    pxelinux = files["tftp/pxelinux.cfg/01-52-54-00-00-01-04"]
    cmdline = next(line.split("APPEND ", 1)[1] for line in pxelinux.splitlines() if "APPEND" in line)
    assert f"linux (http,192.168.1.10)/director/vmlinuz {cmdline}\n" in loadb2  # pxelinux's very command line
    assert "initrd (http,192.168.1.10)/director/initrd.img\n" in loadb2
    top = files["tftp/grub/grub.cfg"]
    assert 'configfile "$prefix/nodes/$net_default_mac.cfg"' in top
    assert "cat ($root)/pxelinux.cfg/not-a-node.txt\n" in top and top.rstrip().endswith("exit")
    # Built from BIOS images, the tree has no UEFI part, and dnsmasq does not offer one.
    bios = pxe.render_configs(cluster, uefi=False)
    assert not any(k.startswith("tftp/grub/") for k in bios)
    assert "efi" not in bios["dnsmasq-static.conf"].replace("pxelinux", "")
    static = files["dnsmasq-static.conf"]
    assert "dhcp-match=set:efi64,option:client-arch,7\n" in static
    assert "dhcp-boot=tag:efi64,bootx64.efi\ndhcp-boot=tag:!efi64,lpxelinux.0\n" in static
    assert 'pxe-service=X86-64_EFI,"lvs-builder: reference cluster",bootx64.efi\n' in files["dnsmasq-proxy.conf"]


def test_dnsmasq_accepts_both_configurations(tmp_path: Path) -> None:
    need_tool("dnsmasq")
    cluster, _ = spec.load(None)
    files = pxe.render_configs(cluster)
    static = files["dnsmasq-static.conf"]
    assert "dhcp-host=52:54:00:00:01:04,192.168.1.104,loadb2,infinite\n" in static
    assert "dhcp-range=192.168.1.200,192.168.1.209,255.255.255.0,10m\n" in static
    assert "dhcp-option=option:router\n" in static  # the spec has no gateway: advertise none
    assert "dhcp-range=192.168.1.0,proxy,255.255.255.0\n" in files["dnsmasq-proxy.conf"]
    for mode in ("static", "proxy"):
        assert "dhcp-option-force=211,30i\n" in files[f"dnsmasq-{mode}.conf"]  # pxelinux retries after 30 s
        conf = tmp_path / f"dnsmasq-{mode}.conf"
        conf.write_text(files[f"dnsmasq-{mode}.conf"])
        r = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True)
        assert r.returncode == 0 and "syntax check OK" in r.stderr, r.stderr


@pytest.mark.parametrize("mutate,line", [
    (lambda d: d["real_servers"][1].pop("mac"),
     "error: real_servers[1].mac: webserver2 has no MAC, so no PXE entry can name it: add its MAC, or roll it "
     "out from a disk image"),
    (lambda d: d.pop("provisioning"),
     "error: provisioning: missing: a PXE rollout needs the provisioning server's address (provisioning: "
     "{server: ADDRESS}); see docs/spec.md"),
])
def test_build_pxe_refuses_a_spec_it_cannot_roll_out_before_building_anything(
        tmp_path: Path, reference: dict[str, Any], mutate: Any, line: str) -> None:
    mutate(reference)
    path = write_spec(tmp_path, reference)
    r = CliRunner().invoke(cli, ["-v", "build-pxe", "--spec", str(path), "--out", str(tmp_path / "pxe"),
                                 "--images", str(tmp_path / "images")])
    assert r.exit_code == 2
    assert line in r.stderr.splitlines()
    assert not (tmp_path / "pxe").exists() and not (tmp_path / "images").exists()


_SERVE_HTTP = """
import json, sys
from pathlib import Path
from builder import pxe, serve
tree, mode, address = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
manifest = json.loads((tree / pxe.MANIFEST).read_text())
httpd = serve.http_server(tree / "http", address, 80, pxe.policy(manifest, mode), lambda line: None, "pxe serve")
print("ready", flush=True)
httpd.serve_forever()
"""


@pytest.mark.parametrize("mode", ["static", "proxy"])
def test_pxe_serve_gives_the_directors_files_to_the_directors_only(netns: Netns, tmp_path: Path, mode: str) -> None:
    """pxe serve's HTTP side (its policy, as `pxe serve` runs it) on a tree of stand-in files, in a
    namespace of the test's own with a director's, a real server's and a stranger's address: the
    director's root filesystem (the keys inside) to the director only, in proxy mode too; the
    real server's to the nodes (static) or anyone (proxy). The slow test below does it with
    dnsmasq on a tree build-pxe made."""
    cluster, _ = spec.load(None)
    tree = tmp_path / "tree"
    for role in ("director", "realserver"):
        (tree / "http" / role).mkdir(parents=True)
        (tree / "http" / role / "filesystem.squashfs").write_text(f"{role} root\n")
    nodes = {n.name: {"role": role, "address": str(n.address)}
             for role, group in (("director", cluster.directors), ("realserver", cluster.real_servers))
             for n in group}
    (tree / pxe.MANIFEST).write_text(json.dumps({"nodes": nodes}))
    assert cluster.provisioning is not None
    server, director, real, stranger = str(cluster.provisioning.server), "192.168.1.103", "192.168.1.101", \
        "192.168.1.77"
    for a in (director, real, stranger):
        subprocess.run(["ip", "-n", netns.name, "address", "add", f"{a}/32", "dev", "lo"], check=True)
    proc = subprocess.Popen(netns.argv([sys.executable, "-c", _SERVE_HTTP, str(tree), mode, server]),
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for who in (director, real, stranger):
            assert http_status(netns.name, server, 80, who, "/director/filesystem.squashfs") == \
                (200 if who == director else 403), who
            assert http_status(netns.name, server, 80, who, "/realserver/filesystem.squashfs") == \
                (403 if who == stranger and mode == "static" else 200), who
            assert http_status(netns.name, server, 80, who, "/director/") == 404  # no listing
    finally:
        proc.terminate()
        proc.wait(10)


# -- slow: the tree, served, booted ---------------------------------------------------------

@pytest.fixture
def netns() -> Iterator[Netns]:
    cluster, _ = spec.load(None)
    assert cluster.provisioning is not None
    ns = Netns.for_this_process(IPv4Interface(f"{cluster.provisioning.server}/24"))
    ns.create()
    try:
        yield ns
    finally:
        ns.delete()


@contextlib.contextmanager
def serving(tree: Path, netns: Netns, log: Path, *options: str) -> Iterator[Path]:
    """`lvs-builder pxe serve` on the namespace's bridge until the block ends; its log file."""
    with log.open("w") as out:
        proc = subprocess.Popen(netns.argv([LVS_BUILDER, "pxe", "serve", "--dir", str(tree), "--interface", BRIDGE,
                                            *options]), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while "ready: dnsmasq (pid" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield log
    finally:
        proc.terminate()
        proc.wait(30)
    assert "stopped dnsmasq and the HTTP server" in log.read_text()


@pytest.fixture
def served(pxe_tree: PxeTree, netns: Netns, tmp_path: Path) -> Iterator[tuple[Netns, Path]]:
    with serving(pxe_tree.tree, netns, tmp_path / "serve.log") as log:
        yield netns, log


@contextlib.contextmanager
def site_dhcp(netns: Netns, tmp_path: Path, reserved: dict[str, str] | None = None) -> Iterator[Path]:
    """The site's own DHCP server (dnsmasq handing out 192.168.1.150-159, and each MAC in
    `reserved` its address), another machine on the segment: a namespace of its own (one
    shared with ours would drop our probe, which comes from an address local to it), a veth
    into our bridge, no route anywhere else. Yields its log."""
    ip = ["ip", "-n", netns.name]
    other_ns = f"{netns.name}-other"
    log = tmp_path / "site-dhcp.log"
    subprocess.run(["ip", "netns", "add", other_ns], check=True)
    other = None
    try:
        subprocess.run([*ip, "link", "add", "other0", "type", "veth", "peer", "name", "other1", "netns", other_ns],
                       check=True)
        subprocess.run([*ip, "link", "set", "other0", "master", BRIDGE, "up"], check=True)
        subprocess.run(["ip", "-n", other_ns, "address", "add", "192.168.1.1/24", "dev", "other1"], check=True)
        subprocess.run(["ip", "-n", other_ns, "link", "set", "other1", "up"], check=True)
        with log.open("w") as out:
            other = subprocess.Popen(["ip", "netns", "exec", other_ns,
                "dnsmasq", "--keep-in-foreground", "--port=0", "--bind-interfaces", "--interface=other1",
                "--dhcp-range=192.168.1.150,192.168.1.159,1h", f"--dhcp-leasefile={tmp_path / 'other.leases'}",
                *(f"--dhcp-host={mac},{address}" for mac, address in (reserved or {}).items()),
                f"--pid-file={tmp_path / 'other.pid'}", "--conf-file=/dev/null", "--log-facility=-"],
                stdout=out, stderr=out)
        time.sleep(2)
        yield log
    finally:
        if other is not None:
            other.terminate()
            other.wait(30)
        subprocess.run(["ip", "netns", "delete", other_ns], check=False)


def pxe_vm(netns: Netns, tmp_path: Path, mac: str, tap: str, firmware: VmFirmware = VmFirmware.BIOS) -> Vm:
    netns.add_tap(tap)
    return Vm(name=f"pxe-{mac.replace(':', '')}", image=None, workdir=tmp_path, mac=mac,
              memory_mib=pxe.PXE_MEMORY_MIB, tap=tap, netns=netns.name, firmware=firmware)


@pytest.mark.slow
def test_the_tree_serves_each_role_from_its_image(pxe_tree: PxeTree, show: Callable[[str], None]) -> None:
    manifest = json.loads((pxe_tree.tree / "pxe.json").read_text())
    assert manifest["server"] == "192.168.1.10" and manifest["dhcp"] == "static"
    show(f"\nbuild-pxe: {pxe_tree.seconds:.0f} s")
    for role in ("director", "realserver"):
        sizes = manifest["roles"][role]["bytes"]
        assert sorted(sizes) == ["filesystem.squashfs", "initrd.img", "vmlinuz"]
        show(f"{role}: " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sizes.items()))
        kernel = pxe_tree.images / f"lvs-{role}-trixie.vmlinuz"
        assert (pxe_tree.tree / "http" / role / "vmlinuz").read_bytes() == kernel.read_bytes()
        fstab = subprocess.run(["unsquashfs", "-cat", str(pxe_tree.tree / "http" / role / "filesystem.squashfs"),
                                "etc/fstab"], capture_output=True, text=True, check=True).stdout
        # no disk: neither its root nor the hybrid image's EFI system partition is waited for
        assert not [line for line in fstab.splitlines() if line.split()[1:2] in (["/"], ["/boot/efi"])], fstab
    for module in ("lpxelinux.0", "ldlinux.c32", "cat.c32", "libcom32.c32"):
        assert (pxe_tree.tree / "tftp" / module).exists(), module
    # UEFI: the images' own signed shim and GRUB network image (Debian's; shim's is Microsoft's signature)
    assert manifest["uefi"] is True
    shim = subprocess.run(["unsquashfs", "-cat", str(pxe_tree.tree / "http" / "realserver" / "filesystem.squashfs"),
                           "usr/lib/shim/shimx64.efi.signed"], capture_output=True, check=True).stdout
    assert (pxe_tree.tree / "tftp" / "bootx64.efi").read_bytes() == shim
    assert b"Microsoft Corporation UEFI CA" in shim
    assert (pxe_tree.tree / "tftp" / "grubx64.efi").stat().st_size > 0
    assert manifest["nodes"]["loadb2"]["uefi_entry"] == "tftp/grub/nodes/52:54:00:00:01:04.cfg"


@pytest.mark.slow
def test_a_diskless_uefi_machine_boots_as_the_node_its_mac_names_and_strangers_do_not_join(
        served: tuple[Netns, Path], tmp_path: Path, show: Callable[[str], None]) -> None:
    """loadb2's MAC on a diskless UEFI machine with Secure Boot on (OVMF, Microsoft's keys):
    shim, GRUB and the kernel all pass the firmware's checks and it runs as loadb2. A UEFI
    stranger and a BIOS stranger (pxelinux) are each told why they stay out."""
    netns, log = served
    node = pxe_vm(netns, tmp_path, "52:54:00:00:01:04", "tap0", VmFirmware.UEFI_SECURE)  # loadb2's MAC
    stranger = pxe_vm(netns, tmp_path, "52:54:00:99:99:98", "tap1", VmFirmware.UEFI_SECURE)  # in no node
    bios_stranger = pxe_vm(netns, tmp_path, "52:54:00:99:99:97", "tap2")
    try:
        start = time.monotonic()
        for vm in (node, stranger, bios_stranger):
            vm.start()
        bios_stranger.wait_console("does not join the cluster", BOOT_TIMEOUT)
        bios_stranger.stop()
        stranger.wait_console("does not join the cluster", BOOT_TIMEOUT)
        show(f"\nUEFI stranger turned away after {time.monotonic() - start:.0f} s")
        stranger.stop()
        node.wait_agent(BOOT_TIMEOUT)
        state = node.sh("systemctl is-system-running --wait", timeout=BOOT_TIMEOUT).stdout.strip()
        show(f"loadb2 over UEFI PXE (Secure Boot on): {state} after {time.monotonic() - start:.0f} s under emulation")
        r = node.sh(r"""
            echo hostname=$(hostname)
            echo address=$(ip -4 -o address show dev eth0 | awk '{print $4}' | tr '\n' ' ')
            echo root=$(findmnt -n -o FSTYPE /)
            echo heartbeat=$(systemctl is-enabled heartbeat.service)
            echo ldirectord=$(systemctl is-enabled ldirectord.service || true)
            echo authkeys=$(stat -c '%a %U:%G' /etc/ha.d/authkeys)
            echo failed=$(systemctl --failed --no-legend | awk '{print $2}' | tr '\n' ' ')
            echo sb=$(mokutil --sb-state 2>&1)
        """)
        facts = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        assert facts["sb"] == "SecureBoot enabled", facts
        assert facts["hostname"] == "loadb2"
        assert "192.168.1.104/24" in facts["address"].split()
        assert facts["root"] == "overlay"  # live-boot: the squashfs under a RAM overlay, no disk
        assert (facts["heartbeat"], facts["ldirectord"]) == ("enabled", "enabled")
        assert facts["authkeys"] == "600 root:root"
        assert facts["failed"].strip() == "", facts["failed"]
        console = node.console_text()
        assert "lvs-builder: booting loadb2, director of the reference cluster" in console  # GRUB's entry
        assert re.search(r"Command line: .*fetch=http://192\.168\.1\.10/director/filesystem\.squashfs .*"
                         r"lvs\.node=loadb2", console), console[:3000]
        assert "lvs-identity: this machine is loadb2, director of the reference cluster " \
               "(lvs.node=loadb2 on the kernel command line)" in console
        # The strangers got an address from the pool, read the default entry, and went no further.
        for other in (stranger.console_text(), bios_stranger.console_text()):
            assert "the nodes are loadb1 (52:54:00:00:01:03)" in other
            assert "Linux version" not in other
        served_log = log.read_text()
        assert "52:54:00:99:99:98" in served_log and "52:54:00:99:99:97" in served_log  # dnsmasq saw both
        # dnsmasq's TFTP gave loadb2 shim, then shim's GRUB and loadb2's GRUB entry
        for sent in ("bootx64.efi", "grubx64.efi", "grub/nodes/52:54:00:00:01:04.cfg"):
            assert re.search(rf"sent \S*/{re.escape(sent)} to 192\.168\.1\.104", served_log), sent
        # pxelinux's reboot time went out with the node's address (a failed load starts again in 30 s)
        assert re.search(r"sent size:\s+4 option:\s*211\b", served_log), served_log[-3000:]
        assert "GET /director/filesystem.squashfs" in served_log
    finally:
        for vm in (node, stranger, bios_stranger):
            vm.stop()


@pytest.mark.slow
def test_pxe_serve_gives_the_directors_root_filesystem_to_the_directors_only_and_dnsmasq_runs_as_nobody(
        served: tuple[Netns, Path], pxe_tree: PxeTree) -> None:
    """The real tree, served in the test's namespace: asked from a director's address, a real
    server's and a stranger's (on the bridge beside the server's)."""
    netns, log = served
    # dnsmasq dropped root (it serves DHCP and TFTP to anyone on the segment)
    pid = re.search(r"ready: dnsmasq \(pid (\d+)\)", log.read_text())
    assert pid is not None, log.read_text()
    uids = Path(f"/proc/{pid.group(1)}/status").read_text().split("\nUid:")[1].split("\n")[0].split()
    assert uids == ["65534"] * 4  # nobody: real, effective, saved, file system
    manifest = pxe.read_manifest(pxe_tree.tree)
    server, port = manifest["server"], str(manifest["http_port"])
    director, real, stranger = "192.168.1.104", "192.168.1.101", "192.168.1.77"

    def status(source: str, path: str) -> int:
        return http_status(netns.name, server, port, source, path)

    for a in (director, real, stranger):
        subprocess.run(["ip", "-n", netns.name, "address", "add", f"{a}/32", "dev", BRIDGE], check=True)
    try:
        for path in ("/director/filesystem.squashfs", "/director/vmlinuz"):
            assert (status(director, path), status(real, path), status(stranger, path)) == (200, 403, 403)
        assert (status(director, "/realserver/filesystem.squashfs"), status(real, "/realserver/filesystem.squashfs"),
                status(stranger, "/realserver/filesystem.squashfs")) == (200, 200, 403)
        assert status(real, "/realserver/") == 404  # no listing
    finally:
        for a in (director, real, stranger):
            subprocess.run(["ip", "-n", netns.name, "address", "del", f"{a}/32", "dev", BRIDGE], check=False)
    # on the build host too, the director's files are its owner's only
    for f in (pxe_tree.tree / "http" / "director").iterdir():
        assert f.stat().st_mode & 0o077 == 0, f
    assert (pxe_tree.tree / "http" / "realserver" / "vmlinuz").stat().st_mode & 0o777 == 0o644


@pytest.mark.slow
def test_pxe_serve_refuses_an_interface_with_another_dhcp_server(pxe_tree: PxeTree, netns: Netns,
                                                                 tmp_path: Path) -> None:
    need_tool("dnsmasq")
    with site_dhcp(netns, tmp_path):
        r = subprocess.run(netns.argv([LVS_BUILDER, "pxe", "serve", "--dir", str(pxe_tree.tree),
                                       "--interface", BRIDGE]), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {BRIDGE}: another DHCP server already answers here (192.168.1.1); two would hand out "
        "conflicting leases: serve with --proxy (boot information only, that server keeps the addresses)")
    assert "ready:" not in r.stdout + r.stderr


@pytest.mark.slow
def test_beside_the_sites_dhcp_server_a_uefi_machine_boots_as_its_node_through_proxy_dhcp(
        pxe_tree: PxeTree, netns: Netns, tmp_path: Path, show: Callable[[str], None]) -> None:
    """Proxy mode: the site's DHCP server hands out the addresses (loadb2's reserved for its MAC,
    as a site reserves a director's), `pxe serve --proxy` only where to boot from. A diskless
    UEFI machine with Secure Boot on and loadb2's MAC gets shim from the proxy's answer, then
    GRUB and its entry, and runs as loadb2."""
    with site_dhcp(netns, tmp_path, {"52:54:00:00:01:04": "192.168.1.104"}) as site_log, \
            serving(pxe_tree.tree, netns, tmp_path / "serve.log", "--proxy") as log:
        node = pxe_vm(netns, tmp_path, "52:54:00:00:01:04", "tap0", VmFirmware.UEFI_SECURE)
        try:
            start = time.monotonic()
            node.start()
            node.wait_agent(BOOT_TIMEOUT)
            state = node.sh("systemctl is-system-running --wait", timeout=BOOT_TIMEOUT).stdout.strip()
            show(f"\nloadb2 over UEFI PXE, proxy DHCP (Secure Boot on): {state} after "
                 f"{time.monotonic() - start:.0f} s under emulation")
            r = node.sh("echo hostname=$(hostname); echo sb=$(mokutil --sb-state 2>&1); "
                        "echo address=$(ip -4 -o address show dev eth0 | awk '{print $4}')")
        finally:
            node.stop()
    facts = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert (facts["hostname"], facts["sb"], facts["address"]) == ("loadb2", "SecureBoot enabled", "192.168.1.104/24")
    served_log = log.read_text()
    assert "DHCP, proxy on subnet 192.168.1.0" in served_log
    assert "DHCPACK" not in served_log  # the addresses are the site's
    assert re.search(r"DHCPACK\(other1\) 192\.168\.1\.104 52:54:00:00:01:04", site_log.read_text())
    for sent in ("bootx64.efi", "grubx64.efi", "grub/nodes/52:54:00:00:01:04.cfg"):
        assert re.search(rf"sent \S*/{re.escape(sent)} to 192\.168\.1\.104", served_log), sent
    assert "GET /director/filesystem.squashfs" in served_log


@pytest.mark.slow
@pytest.mark.full  # its images, tree and five diskless VMs take ~16 min: more than CI's time has left
def test_the_lab_proves_another_cluster_booted_diskless_from_its_tree(tmp_path: Path,
                                                                     show: Callable[[str], None]) -> None:
    """docs/examples/shop.yaml, a cluster unlike the reference (other names and subnet, three
    real servers, wrr 3:2:1, a second VIP over two of them without a fallback, sync id 7): `lab --pxe`
    builds its images and PXE tree from the spec, boots every node diskless through its NIC's
    PXE ROM, runs the tutorial's checks on every VIP, then what is PXE-specific: a director and
    a real server lose power and network-boot into the cluster again (3-kill). The reference
    cluster's whole matrix runs from disk (test_lab.py)."""
    spec_path = tmp_path / "shop.yaml"
    shutil.copy(REPO / "docs" / "examples" / "shop.yaml", spec_path)
    r = CliRunner().invoke(cli, ["keygen", "--spec", str(spec_path)])  # its key, beside it
    assert r.exit_code == 0, r.output
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    work = tmp_path / "lab"
    argv = [LVS_BUILDER, "lab", "--spec", str(spec_path), "--pxe", "--images", str(tmp_path / "images"),
            "--workdir", str(work), "--json", "--scenario", "3-kill"]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        stdout, stderr = proc.communicate(timeout=3600)
    report_md = work / "report.md"
    assert report_md.exists(), f"lab --pxe ended ({proc.returncode}) without a report: {stderr[-3000:]}"
    show("\n" + report_md.read_text())
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(stdout)
    assert report["ok"] is True and report["boot"] == "pxe" and report["cluster"] == "shop"
    assert report["vips"] == ["172.16.40.50:80", "172.16.40.51:80"]
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == ["a", "b", "c", "d", "e", "f", "3-kill"]
    # each VIP's client was answered as its scheduler spreads: wrr 3:2:1 over every server, rr over two
    shares = {part.split(": ")[0]: part.split(": ")[1].split() for part in rows["f"]["detail"].split("; ")}
    assert sorted(set(shares["172.16.40.50:80"])) == ["web-1", "web-2", "web-3"]
    assert sorted(set(shares["172.16.40.51:80"])) == ["web-1", "web-3"]
    kill = rows["3-kill"]
    assert set(kill["served_again"]) == {"172.16.40.50:80", "172.16.40.51:80"}
    assert set(kill["detected"]) == {"web-1", "lb-a"}  # web-1 is behind both VIPs: out of both
    assert kill["vip_at_end"] == "lb-b"
    # every node fetched its root filesystem over HTTP at boot, and the two that lost power again
    served = (work / "pxe-serve.log").read_text()
    assert served.count("GET /director/filesystem.squashfs") == 3, served[-2000:]
    assert served.count("GET /realserver/filesystem.squashfs") == 4, served[-2000:]
    assert "pxe serve: dnsmasq and HTTP on br0 (172.16.40.5)" in stderr
