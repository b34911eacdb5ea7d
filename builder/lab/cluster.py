"""The lab's machines: the cluster a spec describes, booted under QEMU inside a private
network namespace, with its clients, and the primitive acts faults are made of.

Every director and real server boots from its role image (one copy-on-write overlay each)
with the MAC the spec gives it (or, if it has none, its name on the kernel command line),
attached by a tap to one bridge in a namespace of its own. A client per virtual service is a
process in that namespace on an address of the spec's subnet that no node uses. The
namespace has no route out; deleting it removes the bridge and taps. What the lab starts it
stops by PID."""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any, TypeVar

from ..errors import BuilderError
from ..firmware import VmFirmware
from ..image import DIRECT_BOOT_CMDLINE
from ..model import Cluster, Node, Role
from ..netns import BRIDGE, Netns, remove_stale
from ..pxe import PXE_MEMORY_MIB, READY
from ..qemu import NIC_ID, GuestResult, Vm
from ..run import log
from . import download, probes, traffic
from .stack import Stack, parse_ipvsadm

T = TypeVar("T")

MEMORY_MIB = 512
BOOT_TIMEOUT = 600        # VM start -> guest agent answers, under emulation on 2 loaded cores
# A boot that has printed nothing new for this long while still in its firmware (the PXE ROM
# and pxelinux: DHCP, TFTP, the kernel over HTTP) is stuck: seen once in CI, a diskless VM that
# never got past its firmware in 600 s while the two VMs started beside it booted. Firmware
# usually takes under 40 s here; it is powered on again, once, as an operator would.
FIRMWARE_STALL = 180
LOADER_STAGES = ("firmware", "pxelinux", "grub")  # before the kernel: where a stall is the firmware's
POLL = 1.0
LAB_PAGE = "/run/lvs-lab-broken-page"   # what a real server's health page says while broken


@dataclass
class LabNode:
    node: Node
    role: Role
    vm: Vm

    @property
    def name(self) -> str:
        return self.node.name


def client_address(cluster: Cluster, *later: Cluster) -> IPv4Interface:
    """The highest address of the spec's subnet that no node, VIP or gateway uses, nor a ping
    node of the spec or of a cluster the lab upgrades to (`later`)."""
    used = {n.address for n in (*cluster.directors, *cluster.real_servers)} | set(cluster.vips)
    for c in (cluster, *later):
        used.update(c.heartbeat.ping_nodes)
    if cluster.network.gateway:
        used.add(cluster.network.gateway)
    if cluster.provisioning:
        used.add(cluster.provisioning.server)
        used.update(cluster.pool_addresses)
    for host in reversed(list(cluster.subnet.hosts())):
        if host not in used:
            return IPv4Interface(f"{host}/{cluster.subnet.prefixlen}")
    raise BuilderError(f"network: no free address in {cluster.subnet} for the lab's client")


def lab_mac(index: int) -> str:
    return f"52:54:00:1a:b0:{index:02x}"


class Lab:
    def __init__(self, cluster: Cluster, images: dict[Role, Path], workdir: Path, stack: Stack,
                 progress: Callable[[str], None] = lambda s: None, pxe_tree: Path | None = None,
                 later: tuple[Cluster, ...] = (), firmware: VmFirmware | None = None) -> None:
        self.cluster = cluster  # what the nodes run now: the spec's, then what `lab --upgrade-to` rolled out
        # The wiring is made once, at boot, for the spec's cluster and for those the lab upgrades to
        # (`later`: a serial cable and a router the spec's ha.cf does not name yet are simply unused).
        self.wired = (cluster, *later)
        self.stack = stack
        self.images = images
        self.workdir = workdir
        self.pxe_tree = pxe_tree
        self.progress = progress
        self.netns = Netns.for_this_process(client_address(cluster, *later))
        self.services = traffic.services(cluster)
        self.vips = [str(v) for v in cluster.vips]
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.nodes: list[LabNode] = []
        self.notes: list[str] = []
        self.start = time.monotonic()
        for i, (node, role) in enumerate([*((d, Role.DIRECTOR) for d in cluster.directors),
                                          *((r, Role.REALSERVER) for r in cluster.real_servers)]):
            # The image's own kernel and initrd, booted directly with its boot loader's command
            # line: 10 s less per boot under emulation (no BIOS disk reads, no boot menu); disk
            # boots through GRUB are what the image tests prove. Identity: the spec's MAC, else
            # the node's name on the command line.
            if pxe_tree is not None:  # diskless: the NIC's PXE ROM, the tree's entry for this MAC
                vm = Vm(name=node.name, image=None, workdir=workdir, mac=node.mac, memory_mib=PXE_MEMORY_MIB,
                        tap=f"tap{i}", netns=self.netns.name, firmware=firmware or VmFirmware.BIOS)
                self.nodes.append(LabNode(node, role, vm))
                continue
            image = images[role]
            vm = Vm(name=node.name, image=image, workdir=workdir, mac=node.mac or lab_mac(i),
                    memory_mib=MEMORY_MIB, tap=f"tap{i}", netns=self.netns.name, firmware=firmware or VmFirmware.BIOS)
            if firmware is None:  # else through the firmware and the image's boot loader: identity by MAC
                stem = image.with_suffix("")
                vm.kernel, vm.initrd = stem.with_suffix(".vmlinuz"), stem.with_suffix(".initrd")
                vm.append = DIRECT_BOOT_CMDLINE + ("" if node.mac else f" lvs.node={node.name}")
            self.nodes.append(LabNode(node, role, vm))
        if self.serial_link:  # the directors' null-modem cable, ttyS1 to ttyS1
            for i, n in enumerate(self.directors):
                n.vm.serial_link = (workdir / "serial-link.sock", i == 0)
        # each heartbeat link of the directors' own: a bridge of its own, a NIC per director on it
        self.links = [f"br{k}" for k, _ in enumerate(cluster.heartbeat_links, 1)]
        for k, _ in enumerate(self.links, 1):
            for i, n in enumerate(self.directors):
                n.vm.extra_nics.append((f"tap{k}l{i}", f"52:54:00:1a:{k:02x}:{i:02x}"))

    # -- set-up and tear-down ---------------------------------------------------------

    def __enter__(self) -> Lab:
        for name in remove_stale():
            self.progress(f"removed {name}, left behind by a lab that was killed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in self.workdir.iterdir():
            if stale.is_file():
                stale.unlink()
        try:
            self.netns.create()
            for n in self.nodes:
                assert n.vm.tap is not None
                self.netns.add_tap(n.vm.tap)
            for k, bridge in enumerate(self.links, 1):
                self.netns.add_bridge(bridge)
                for n in self.directors:
                    self.netns.add_tap(n.vm.extra_nics[k - 1][0], bridge)
            if self.pxe_tree is not None:
                assert self.cluster.provisioning is not None
                self.netns.add_address(IPv4Interface(f"{self.cluster.provisioning.server}/{self.cluster.subnet.prefixlen}"))
            for ping in self.ping_nodes:  # the lab's router: what ipfail pings answers on the bridge
                self.netns.add_address(IPv4Interface(f"{ping}/{self.cluster.subnet.prefixlen}"))
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ fails
            raise
        self.progress(f"network namespace {self.netns.name}: bridge, {len(self.nodes)} taps, "
                      f"client {self.netns.host}, no route out"
                      + "".join(f", ping node {p} on the bridge" for p in self.ping_nodes)
                      + (", a serial link between the directors" if self.serial_link else "")
                      + "".join(f", {b} for heartbeat's {m.interface} between the directors"
                                for b, m in zip(self.links, self.cluster.heartbeat_links, strict=True)))
        return self

    @property
    def ping_nodes(self) -> list[str]:
        """The spec's ping nodes the lab can stand in for: those on the nodes' subnet."""
        found = dict.fromkeys(p for c in self.wired for p in c.heartbeat.ping_nodes if p in c.subnet)
        return [str(p) for p in found]

    @property
    def serial_link(self) -> bool:
        return any(c.serial_medium is not None for c in self.wired)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.helpers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for n in self.nodes:
            n.vm.stop()
        self.netns.delete()
        for leftover in (*self.workdir.glob("*.qcow2"), *self.workdir.glob("*.qga"), *self.workdir.glob("*.qmp"),
                         *self.workdir.glob("*.sock")):
            leftover.unlink()

    # -- who is who -------------------------------------------------------------------

    @property
    def directors(self) -> list[LabNode]:
        return [n for n in self.nodes if n.role is Role.DIRECTOR]

    @property
    def reals(self) -> list[LabNode]:
        return [n for n in self.nodes if n.role is Role.REALSERVER]

    @property
    def macs(self) -> dict[str, str]:
        return {n.name: (n.vm.mac or "").lower() for n in self.directors}

    def now(self) -> float:
        return time.monotonic()

    def since_start(self) -> float:
        return time.monotonic() - self.start

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    # -- asking the guests ------------------------------------------------------------

    def sh(self, n: LabNode, script: str, timeout: float = 60) -> GuestResult | None:
        """A command in a VM, or None if the VM or its agent is not there."""
        return self._ask(n, lambda: n.vm.sh(script, timeout=timeout))

    def put(self, n: LabNode, path: str, data: bytes, tries: int = 3) -> bool:
        """`data` into `path` on a VM (a piece at a time, the whole again on a failure)."""
        return any(self._ask(n, lambda: n.vm.put(path, data)) for _ in range(tries))

    def _ask(self, n: LabNode, call: Callable[[], T]) -> T | None:
        """A guest agent call, or None if the VM or its agent is not there."""
        if not n.vm.running:
            return None
        try:
            return call()
        except (OSError, ValueError, BuilderError) as e:
            log.info("%s: %s", n.name, e)
            return None

    def shell(self, n: LabNode) -> Callable[[str, float], tuple[int, str] | None]:
        def run(script: str, timeout: float) -> tuple[int, str] | None:
            r = self.sh(n, script, timeout)
            return None if r is None else (r.exitcode, r.stdout)
        return run

    def check(self, n: LabNode, role_hint: str = "") -> dict[str, Any] | None:
        return self.stack.check(self.shell(n), role_hint)

    def instance(self, n: LabNode) -> str | None:
        """What names the director stack's running instance (heartbeat's generation); None if
        the director does not answer or the stack is not running."""
        r = self.sh(n, self.stack.instance_command, timeout=30)
        return r.stdout.strip() if r is not None and r.exitcode == 0 and r.stdout.strip() else None

    def held(self, n: LabNode, timeout: float = 30) -> frozenset[str] | None:
        """The VIPs this director holds on its interface now; None if it does not answer."""
        addresses = self._ask(n, lambda: n.vm.ipv4_addresses(timeout=timeout))
        return None if addresses is None else probes.held_vips(addresses, self.cluster.interface_of(n.node), self.vips)

    def held_all(self) -> dict[str, frozenset[str] | None]:
        with ThreadPoolExecutor(len(self.directors)) as pool:
            return dict(zip([d.name for d in self.directors], pool.map(self.held, self.directors), strict=True))

    def ipvs(self, n: LabNode) -> dict[str, Any] | None:
        """`ipvsadm -L -n` on a director, parsed; None if it does not answer."""
        r = self.sh(n, "ipvsadm -L -n", timeout=30)
        return parse_ipvsadm(r.stdout) if r is not None and r.exitcode == 0 else None

    def answers(self, service: traffic.Service, since: float = 0.0) -> list[traffic.Answer]:
        return [a for a in traffic.read_answers(self.workdir / service.log_name) if a.t0 >= since]

    def neighbours(self) -> dict[str, str]:
        return probes.client_neighbours(self.netns.name, self.vips)

    def watch(self) -> probes.Watch:
        """Every director's VIPs and the client's neighbour table, sampled from now on."""
        w = probes.Watch({d.name: functools.partial(self.held, d, 5) for d in self.directors}, self.neighbours)
        w.start()
        return w

    def save_journal(self, n: LabNode, name: str, minutes: int = 3) -> str:
        """The last minutes of a director's journal, monotonic timestamps (heartbeat's takeover,
        step by step), into the workdir: where the time between detection and service went."""
        r = self.sh(n, f"journalctl -b -o short-monotonic --no-pager --since=-{minutes}min", timeout=60)
        if r is None:
            return ""
        (self.workdir / name).write_text(r.stdout + r.stderr)
        return r.stdout

    def clock_offset(self, n: LabNode) -> float | None:
        """The lab's monotonic clock minus the guest's (its uptime), from the quickest of three
        round trips over the agent: within half that round trip."""
        best: tuple[float, float] | None = None
        for _ in range(3):
            h0 = time.monotonic()
            r = self.sh(n, "cat /proc/uptime")
            h1 = time.monotonic()
            if r is None or r.exitcode != 0:
                continue
            with contextlib.suppress(ValueError, IndexError):
                offset = (h0 + h1) / 2 - float(r.stdout.split()[0])
                if best is None or h1 - h0 < best[0]:
                    best = (h1 - h0, offset)
        return best[1] if best else None

    def start_download(self, standby: LabNode) -> tuple[download.Download | None, list[str]]:
        return download.start(self, standby)

    # -- what faults are made of ------------------------------------------------------

    def power_off(self, n: LabNode) -> str | None:
        n.vm.stop()
        return None

    def power_on(self, n: LabNode) -> str | None:
        n.vm.start()
        return None

    def _qmp(self, n: LabNode, command: str, **args: object) -> str | None:
        try:
            n.vm.qmp(command, **args)
        except (OSError, ValueError, BuilderError) as e:
            return f"{n.name}: QMP {command} failed: {e}"
        return None

    def freeze(self, n: LabNode) -> str | None:
        return self._qmp(n, "stop")

    def thaw(self, n: LabNode) -> str | None:
        return self._qmp(n, "cont")

    def set_link(self, n: LabNode, up: bool) -> str | None:
        return self._qmp(n, "set_link", name=NIC_ID, up=up)

    def isolate(self, nodes: list[LabNode], on: bool) -> str | None:
        """Bridge port isolation: isolated ports exchange no frame with each other, and still
        with every other port (the reals, the client)."""
        for n in nodes:
            r = subprocess.run(["bridge", "-n", self.netns.name, "link", "set", "dev", str(n.vm.tap),
                                "isolated", "on" if on else "off"], capture_output=True, text=True)
            log.info("$ bridge -n %s link set dev %s isolated %s", self.netns.name, n.vm.tap, "on" if on else "off")
            if r.returncode != 0:
                return f"bridge link set dev {n.vm.tap} isolated: {r.stderr.strip()}"
        return None

    def _guest(self, n: LabNode, script: str, what: str) -> str | None:
        r = self.sh(n, script, timeout=120)
        if r is None or r.exitcode != 0:
            return f"{what} on {n.name} failed" + (f": {(r.stdout + r.stderr).strip()[-200:]}" if r else "")
        return None

    def director_stack(self, n: LabNode, running: bool) -> str | None:
        service = self.stack.service
        if running:
            return self._guest(n, f"systemctl start {service}", f"systemctl start {service}")
        return self._guest(n, f"systemctl --no-block stop {service}", f"systemctl stop {service}")

    def web(self, n: LabNode, action: str) -> str | None:
        script = {"stop": "systemctl stop apache2", "start": "systemctl start apache2",
                  "hang": "systemctl kill --signal=SIGSTOP apache2",
                  "resume": "systemctl kill --signal=SIGCONT apache2"}[action]
        return self._guest(n, script, script)

    def page(self, n: LabNode, broken: bool) -> str | None:
        """The health page bind-mounted over with one that lacks the receive string, and back."""
        page = f"/usr/share/lvs-realserver/www/{self.cluster.pages.test.path}"
        if broken:
            return self._guest(n, f"echo 'lvs-lab: this page is broken' > {LAB_PAGE} && mount --bind {LAB_PAGE} {page}",
                               "breaking the health page")
        # --lazy: Apache may be sending the broken page at that moment (CI once saw "target is
        # busy"); the mount goes at once, that one reply ends from the file it has open.
        return self._guest(n, f"umount --lazy {page} && rm -f {LAB_PAGE}", "restoring the health page")

    # -- boot -------------------------------------------------------------------------

    def boot(self) -> float:
        """Start every VM and the clients; wait for every guest agent. Seconds it took."""
        self.progress("booting " + ", ".join(f"{n.name} ({n.role.value})" for n in self.nodes)
                      + " under QEMU (software emulation)")
        if self.pxe_tree is not None:
            self._start_pxe_server()
        t = time.monotonic()
        for n in self.nodes:  # from this thread: a VM dies with the thread that started it
            n.vm.start()
        self._start_clients()
        self.wait_up(self.nodes, t)
        return time.monotonic() - t

    def wait_up(self, nodes: list[LabNode], t: float) -> None:
        """Wait for the guest agents of booting VMs; say every 20 s how far each got. A guest
        kernel that panics while booting is powered on again, once: that is the emulator's
        doing (QEMU's TCG), not the cluster's, and the report says so."""
        waiting = list(nodes)
        retried: set[str] = set()
        said = time.monotonic()
        # per VM: how much its console showed of this boot, and since when
        progress = {n.name: (0, time.monotonic()) for n in nodes}
        while waiting:
            for n in list(waiting):
                stage = n.vm.boot_stage()
                shown = len(n.vm.console_since_start())
                if shown != progress[n.name][0]:
                    progress[n.name] = (shown, time.monotonic())
                stalled = time.monotonic() - progress[n.name][1]
                if n.vm.ping():
                    waiting.remove(n)
                    self.progress(f"{n.name} is up after {time.monotonic() - t:.0f} s (guest agent answers)")
                elif not n.vm.running:
                    raise BuilderError(f"{n.name}: QEMU exited; see {n.vm.workdir / (n.vm.name + '.qemu.log')}")
                elif stage == "kernel panic" or (stage in LOADER_STAGES and stalled > FIRMWARE_STALL):
                    where = f"see {n.vm.console}"
                    if stage == "kernel panic":
                        what = "the guest kernel panicked while booting"
                    else:
                        last = n.vm.console_since_start().strip().splitlines()
                        what = (f"its firmware printed nothing for {stalled:.0f} s (console's last line: "
                                f"{last[-1].strip() if last else 'none'!r})")
                    if n.name in retried:
                        raise BuilderError(f"{n.name}: {what}, a second time; {where}")
                    retried.add(n.name)
                    note = (f"{n.name}: {what} ({time.monotonic() - self.start:.0f} s into the lab; {where}); "
                            "powered on again")
                    self.notes.append(note)
                    self.progress(note)
                    n.vm.stop()
                    n.vm.start()
                    progress[n.name] = (0, time.monotonic())
            if time.monotonic() - t > BOOT_TIMEOUT:
                raise BuilderError("no guest agent answered within "
                                   f"{BOOT_TIMEOUT} s: {', '.join(n.name for n in waiting)}")
            if waiting and time.monotonic() - said >= 20:
                said = time.monotonic()
                self.progress("booting: " + ", ".join(f"{n.name} ({n.vm.boot_stage()})" for n in waiting))
            time.sleep(POLL)

    def panicked(self, n: LabNode) -> str | None:
        """The line its console shows if the guest kernel panicked this boot (it answers nothing
        until powered off and on again; under QEMU's TCG that is the emulator's doing)."""
        text = n.vm.console_since_start() if n.vm.running else ""
        lines = [line for line in text.splitlines() if "Kernel panic" in line]
        return lines[-1].split("] ", 1)[-1].strip() if lines else None

    def wait_agents(self, deadline: float) -> None:
        for n in self.nodes:
            if n.vm.running and self.panicked(n) is None:
                with contextlib.suppress(BuilderError):
                    n.vm.wait_agent(max(1.0, deadline - time.monotonic()))

    def spawn(self, argv: list[str], logname: str) -> subprocess.Popen[bytes]:
        log.info("$ %s", " ".join(argv))
        with open(self.workdir / logname, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.helpers.append(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], logfile: Path, ready: str, what: str) -> None:
        deadline = time.monotonic() + 60
        while ready not in logfile.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                lines = logfile.read_text(errors="replace").strip().splitlines()
                raise BuilderError(f"{what} did not start: {lines[-1] if lines else 'no output'} (see {logfile})")
            time.sleep(0.2)

    def _start_pxe_server(self) -> None:
        """`lvs-builder pxe serve` on the bridge, as an operator runs it; wait until dnsmasq runs."""
        assert self.pxe_tree is not None and self.cluster.provisioning is not None
        proc = self.spawn(self.netns.argv([sys.executable, "-m", "builder", "pxe", "serve", "--dir",
                                           str(self.pxe_tree.resolve()), "--interface", BRIDGE]), "pxe-serve.log")
        self.wait_ready(proc, self.workdir / "pxe-serve.log", f"{READY} dnsmasq", "pxe serve")
        self.progress(f"pxe serve: dnsmasq and HTTP on {BRIDGE} ({self.cluster.provisioning.server})")

    def _start_clients(self) -> None:
        """One client per virtual service, requesting its VIP five times a second."""
        for svc in self.services:
            self.spawn(self.netns.argv(
                [sys.executable, "-m", "builder.labclient", "--host", str(svc.vs.address),
                 "--port", str(svc.vs.port or 80), "--out", str(self.workdir / svc.log_name),
                 "--fallback-marker", traffic.FALLBACK_MARKER]),
                svc.log_name.replace(".jsonl", ".log"))
        # Which MAC the client's VIPs point at, over time: who answered ARP (diagnostics).
        self.spawn(["ip", "-n", self.netns.name, "-ts", "monitor", "neigh"], "neigh.log")
