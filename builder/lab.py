"""The lab: the cluster a spec describes, booted in VMs inside a private network namespace,
put through the Ultramonkey tutorial's checks and its five failure tests.

Every director and real server boots from its role image (one copy-on-write overlay each)
with the MAC the spec gives it (or, if it has none, its name on the kernel command line),
attached by a tap to one bridge in a namespace of its own. The client is a process in that
namespace on an address of the spec's subnet that no node uses, requesting the VIP all the
time. The namespace has no route out; deleting it removes the bridge and taps.

The checks inside the VMs are the director package's own `lvs-cluster-check`, the command an
operator runs on real directors; the lab reads its JSON. Failure = power loss (the VM's QEMU
is killed) or, for directors, also a clean `systemctl stop heartbeat`. Times are reported,
never asserted: under software emulation they are inflated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from pathlib import Path
from types import ModuleType
from typing import Any

from . import data_root
from .errors import BuilderError
from .image import DIRECT_BOOT_CMDLINE
from .model import Cluster, Node, Role
from .netns import BRIDGE, Netns, remove_stale
from .pxe import PXE_MEMORY_MIB, READY
from .qemu import GuestResult, Vm
from .render import sources_name
from .repo import READY as REPO_READY
from .repo import REPO_PORT
from .run import log, require

MEMORY_MIB = 512
BOOT_TIMEOUT = 600        # VM start -> guest agent answers, under emulation on 2 loaded cores
# A boot that has printed nothing new for this long while still in its firmware (the PXE ROM
# and pxelinux: DHCP, TFTP, the kernel over HTTP) is stuck: seen once in CI, a diskless VM that
# never got past its firmware in 600 s while the two VMs started beside it booted. Firmware
# usually takes under 40 s here; it is powered on again, once, as an operator would.
FIRMWARE_STALL = 180
CONVERGE_TIMEOUT = 420    # -> both directors pass lvs-cluster-check and the client is served
FAILOVER_TIMEOUT = 240    # failure -> detected and served again
STEADY = 5                # consecutive good answers that count as "served again"
POLL = 1.0
# The download held across a director failover: seq's lines (deterministic, so any byte lost,
# doubled or reordered changes the checksum), read at a rate that makes it last ~45 s.
TRANSFER_PATH = "/lvs-lab-transfer.txt"
TRANSFER_LINES = 1_000_000
TRANSFER_RATE = 150_000     # bytes a second
TRANSFER_TIMEOUT = 120      # seconds without a byte before the client gives up


# lab --upgrade: apt on the nodes reads only the lab's repository (they have no route to any
# other), and keeps an admin's edited conffile as dpkg would ask an admin to (the new one
# beside it as .dpkg-dist).
MAINTENANCE_DIR = "/var/lib/lvs-director/maintenance"   # ldirectord's maintenancedir
UPGRADE_STEP_TIMEOUT = 300


def apt_only(sources: str) -> str:
    return (f"-o Dir::Etc::SourceList=/etc/apt/sources.list.d/{sources} -o Dir::Etc::SourceParts=- "
            "-o APT::Get::List-Cleanup=0")


class Failure(enum.Enum):
    KILL = "kill"   # power loss: the VM's QEMU process is killed
    STOP = "stop"   # a clean `systemctl stop heartbeat` on the director


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    reals: str                      # which real servers fail: "none", "one", "all"
    director: Failure | None = None  # how the active director fails, if it does
    transfer: bool = False          # a long download through the VIP spans the failure


SCENARIOS = (
    Scenario("1", "one web server fails", "one"),
    Scenario("2-kill", "the active director fails (power loss), a long download in flight", "none", Failure.KILL,
             transfer=True),
    Scenario("2-stop", "the active director fails (heartbeat stopped)", "none", Failure.STOP),
    Scenario("3-kill", "one web server and the active director fail (power loss)", "one", Failure.KILL),
    Scenario("3-stop", "one web server fails, the active director's heartbeat stops", "one", Failure.STOP),
    Scenario("4", "both web servers fail: the active director serves the fallback", "all"),
    Scenario("5-kill", "both web servers and the active director fail (power loss)", "all", Failure.KILL),
    Scenario("5-stop", "both web servers fail, the active director's heartbeat stops", "all", Failure.STOP),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)


@dataclass
class Row:
    """One line of the report: a functional check or a scenario."""
    kind: str                       # "check" | "scenario"
    key: str
    title: str
    ok: bool
    detail: str = ""
    detected_s: float | None = None
    detected: dict[str, float] = field(default_factory=dict)
    served_again_s: float | None = None
    sent: int | None = None
    failed: int | None = None
    failed_restoring: int | None = None  # of `failed`: while the failed machines came back
    vip_at_end: str | None = None
    seconds: float | None = None
    transfer: dict[str, Any] | None = None  # the download that spanned the failure, if any


@dataclass
class Report:
    cluster: str
    release: str
    rows: list[Row] = field(default_factory=list)
    boot: str = "disk"                 # "disk": the role images; "pxe": diskless from the PXE tree
    directors: str = "lvs-director"    # or "keepalived (bench peer)": bench/run's side-by-side
    boot_s: float | None = None        # VMs started -> every guest agent answers
    serving_s: float | None = None     # VMs started -> the first answer through the VIP
    healthy_s: float | None = None     # VMs started -> every check passes
    total_s: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what happened that is not the cluster's doing
    # The longest gap between a peer's heartbeats each director logged this boot ("Late
    # heartbeat", logged past warntime; 0: none that late): the margin left under deadtime.
    late_heartbeat_ms: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.rows) and all(r.ok for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), ok=self.ok)

    def table(self) -> str:
        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        source = "the PXE tree, diskless" if self.boot == "pxe" else "the disk images"
        lines = [
            f"lab: cluster {self.cluster} ({self.release}, booted from {source}, directors: {self.directors}); "
            f"VMs up in {num(self.boot_s)} s, "
            f"VIP served after {num(self.serving_s)} s, all checks passed after {num(self.healthy_s)} s; "
            f"total {num(self.total_s)} s",
            "",
            "| # | check / scenario | result | detected (s) | served again (s) | requests sent / failed "
            "| VIP at end | details |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            reqs = "-" if r.sent is None else f"{r.sent} / {r.failed}"
            lines.append(f"| {r.key} | {r.title} | {'pass' if r.ok else 'FAIL'} | {num(r.detected_s)} | "
                         f"{num(r.served_again_s)} | {reqs} | {r.vip_at_end or '-'} | {r.detail} |")
        if self.late_heartbeat_ms:
            lines += ["", "late heartbeats (longest gap logged past warntime, this boot): " + ", ".join(
                f"{k} {f'{v} ms' if v else 'none'}" for k, v in self.late_heartbeat_ms.items())]
        lines += ["", *(f"note: {n}" for n in self.notes)] if self.notes else []
        if self.error:
            lines += ["", f"lab stopped: {self.error}"]
        lines += ["", "lab: all checks and scenarios passed" if self.ok else "lab: FAILED"]
        return "\n".join(lines)


# -- the check command shipped in the director package, read by the lab too ---------------

def cluster_check_module(path: Path | None = None) -> ModuleType:
    """lvs-cluster-check as the director package ships it (or the file at `path`); the lab
    parses tables with it."""
    path = path or data_root() / "overlays" / "director" / "usr" / "sbin" / "lvs-cluster-check"
    loader = importlib.machinery.SourceFileLoader("lvs_cluster_check", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# -- client log ------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    t0: float
    t1: float
    ok: bool
    who: str | None
    error: str | None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a lab client has written so far (none if it has not started)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line being written
                out.append(json.loads(line))
    return out


def read_answers(path: Path) -> list[Answer]:
    out = [Answer(d["t0"], d["t1"], d["ok"], d.get("who"), d.get("error")) for d in read_jsonl(path)]
    return sorted(out, key=lambda a: a.t0)  # written as they end


def good(a: Answer, expected: set[str]) -> bool:
    return a.ok and a.who in expected


def served_again(answers: list[Answer], t_fail: float, until: float, expected: set[str]) -> float:
    """Seconds from the failure to the end of the outage it caused: to the end of the first good
    answer (from an `expected` server) after the last bad one; 0 if none went bad."""
    window = [a for a in answers if t_fail <= a.t0 < until]
    bad = [i for i, a in enumerate(window) if not good(a, expected)]
    if not bad:
        return 0.0
    after = next((a for a in window[bad[-1] + 1:] if good(a, expected)), None)
    return (after.t1 if after else until) - t_fail


def seen_in_journal(journal: str, gone: str, keepalived: bool, offset: float) -> float | None:
    """In a survivor's `journalctl -o short-monotonic`, the first line saying it saw director
    `gone` go (heartbeat: `node X: is dead` or `Received shutdown notice from 'X'`, or, from
    lvs-director's harc, `X hands over` when X's heartbeat stops; keepalived: `Entering MASTER
    STATE`), as guest uptime + `offset` (on the lab's clock, seconds after the failure). Lines
    from before the failure (an earlier failover's) are skipped."""
    name = re.escape(gone)
    said = re.compile(r"Entering MASTER STATE" if keepalived else
                      rf"node {name}: is dead|Received shutdown notice from '{name}'|{name} hands over")
    for line in journal.splitlines():
        m = re.match(r"\[\s*(\d+\.\d+)\]", line)
        if m and said.search(line):
            seen = float(m.group(1)) + offset
            if seen > -1.0:  # the two clocks agree within a second
                return max(seen, 0.0)
    return None


def in_turn(answers: list[Answer], reals: list[str]) -> bool:
    """Every real server answers, one after the other (round robin seen from one client)."""
    if len(answers) < 2 * len(reals) or not all(a.ok for a in answers):
        return False
    whos = [a.who for a in answers]
    if set(whos) != set(reals):
        return False
    return len(reals) < 2 or all(x != y for x, y in zip(whos, whos[1:], strict=False))


# -- the lab -----------------------------------------------------------------------------

def transfer_content() -> bytes:
    """What `seq 1 TRANSFER_LINES` writes: the file the real servers serve for the download."""
    return "".join(f"{i}\n" for i in range(1, TRANSFER_LINES + 1)).encode()


@dataclass
class Transfer:
    """A download through the VIP, started before a failure, checked after it."""
    proc: subprocess.Popen[bytes]
    log: Path
    size: int
    sha256: str
    port: int | None = None
    synced_to: str | None = None   # the standby whose IPVS table held the connection before the failure


@dataclass
class LabNode:
    node: Node
    role: Role
    vm: Vm


def client_address(cluster: Cluster) -> IPv4Interface:
    """The highest address of the spec's subnet that no node, VIP or gateway uses."""
    used = {n.address for n in (*cluster.directors, *cluster.real_servers)} | set(cluster.vips)
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
    def __init__(self, cluster: Cluster, images: dict[Role, Path], workdir: Path,
                 progress: Callable[[str], None] = lambda s: None, pxe_tree: Path | None = None,
                 peer: bool = False, upgrade_to: tuple[Path, Cluster] | None = None) -> None:
        self.cluster = cluster
        self.upgrade_to = upgrade_to  # lab --upgrade: the repository and the cluster it rolls out
        # peer: the directors boot bench/keepalived's hand-made keepalived image instead of
        # lvs-director's (bench/run's side-by-side): same VMs, network, client and failures;
        # the VIP's place and ipvsadm are all there is to check on them.
        self.peer = peer
        self.ha_service = "keepalived.service" if peer else "heartbeat.service"
        self.images = images
        self.workdir = workdir
        self.pxe_tree = pxe_tree
        self.progress = progress
        self.netns = Netns.for_this_process(client_address(cluster))
        self.client: subprocess.Popen[bytes] | None = None
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.client_log = workdir / "client.jsonl"
        self.check = cluster_check_module()
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
                        tap=f"tap{i}", netns=self.netns.name)
                self.nodes.append(LabNode(node, role, vm))
                continue
            image = images[role]
            stem = image.with_suffix("")
            append = DIRECT_BOOT_CMDLINE + ("" if node.mac else f" lvs.node={node.name}")
            vm = Vm(name=node.name, image=image, workdir=workdir, mac=node.mac or lab_mac(i),
                    kernel=stem.with_suffix(".vmlinuz"), initrd=stem.with_suffix(".initrd"), append=append,
                    memory_mib=MEMORY_MIB, tap=f"tap{i}", netns=self.netns.name)
            self.nodes.append(LabNode(node, role, vm))

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
            if self.pxe_tree is not None:
                assert self.cluster.provisioning is not None
                self.netns.add_address(IPv4Interface(f"{self.cluster.provisioning.server}/{self.cluster.subnet.prefixlen}"))
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ fails
            raise
        self.progress(f"network namespace {self.netns.name}: bridge, {len(self.nodes)} taps, "
                      f"client {self.netns.host}, no route out")
        return self

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
        for leftover in (*self.workdir.glob("*.qcow2"), *self.workdir.glob("*.qga")):
            leftover.unlink()

    # -- helpers ----------------------------------------------------------------------

    @property
    def directors(self) -> list[LabNode]:
        return [n for n in self.nodes if n.role is Role.DIRECTOR]

    @property
    def reals(self) -> list[LabNode]:
        return [n for n in self.nodes if n.role is Role.REALSERVER]

    def now(self) -> float:
        return time.monotonic() - self.start

    def sh(self, n: LabNode, script: str, timeout: float = 60) -> GuestResult | None:
        """A command in a VM, or None if the VM or its agent is not there."""
        if not n.vm.running:
            return None
        try:
            return n.vm.sh(script, timeout=timeout)
        except (OSError, ValueError, BuilderError) as e:
            log.info("%s: %s", n.node.name, e)
            return None

    def cluster_check(self, n: LabNode) -> dict[str, Any] | None:
        r = self.sh(n, "lvs-cluster-check --json", timeout=120)
        if r is None or r.exitcode not in (0, 1):
            return None
        try:
            result: dict[str, Any] = json.loads(r.stdout)
        except ValueError:
            return None
        return result

    def answers(self, since: float = 0.0) -> list[Answer]:
        return [a for a in read_answers(self.client_log) if a.t0 >= since]

    def cluster_checks(self, directors: list[LabNode]) -> dict[str, dict[str, Any] | None]:
        """lvs-cluster-check on several directors at once (each VM's agent has its own lock)."""
        with ThreadPoolExecutor(len(directors)) as pool:
            return dict(zip([d.node.name for d in directors], pool.map(self.cluster_check, directors),
                            strict=True))

    def vip_holders(self) -> list[LabNode]:
        vip = str(self.cluster.vips[0])
        holders = []
        for d in self.directors:
            r = self.sh(d, f"ip -4 -o address show dev {self.cluster.interface_of(d.node)}")
            if r is not None and f" {vip}/" in r.stdout:
                holders.append(d)
        return holders

    def unweighted_reals(self, director: LabNode) -> list[str]:
        """The real servers `director`'s IPVS table does not send to (absent or weight 0)."""
        r = self.sh(director, "ipvsadm -L -n")
        table = self.check.parse_ipvsadm(r.stdout) if r is not None and r.exitcode == 0 else {}
        weighted = {address.split(":")[0] for service in table.values()
                    for address, real in service["reals"].items() if real["weight"] > 0}
        return [n.node.name for n in self.reals if str(n.node.address) not in weighted]

    def vip_holder(self) -> LabNode | None:
        holders = self.vip_holders()
        return holders[0] if len(holders) == 1 else None

    # -- boot -------------------------------------------------------------------------

    def boot(self, report: Report) -> None:
        self.progress("booting " + ", ".join(f"{n.node.name} ({n.role.value})" for n in self.nodes)
                      + " under QEMU (software emulation)")
        if self.pxe_tree is not None:
            self._start_pxe_server()
        t = time.monotonic()
        for n in self.nodes:  # from this thread: a VM dies with the thread that started it
            n.vm.start()
        self._start_client()
        self.wait_up(self.nodes, t)
        report.boot_s = time.monotonic() - t

    def wait_up(self, nodes: list[LabNode], t: float) -> None:
        """Wait for the guest agents of booting VMs; say every 20 s how far each got. A guest
        kernel that panics while booting is powered on again, once: that is the emulator's
        doing (QEMU's TCG), not the cluster's, and the report says so."""
        waiting = list(nodes)
        retried: set[str] = set()
        said = time.monotonic()
        # per VM: how much its console showed of this boot, and since when
        progress = {n.node.name: (0, time.monotonic()) for n in nodes}
        while waiting:
            for n in list(waiting):
                stage = n.vm.boot_stage()
                shown = len(n.vm.console_since_start())
                if shown != progress[n.node.name][0]:
                    progress[n.node.name] = (shown, time.monotonic())
                stalled = time.monotonic() - progress[n.node.name][1]
                if n.vm.ping():
                    waiting.remove(n)
                    self.progress(f"{n.node.name} is up after {time.monotonic() - t:.0f} s (guest agent answers)")
                elif not n.vm.running:
                    raise BuilderError(f"{n.node.name}: QEMU exited; see {n.vm.workdir / (n.vm.name + '.qemu.log')}")
                elif stage == "kernel panic" or (stage in ("firmware", "pxelinux") and stalled > FIRMWARE_STALL):
                    where = f"see {n.vm.console}"
                    if stage == "kernel panic":
                        what = "the guest kernel panicked while booting"
                    else:
                        last = n.vm.console_since_start().strip().splitlines()
                        what = (f"its firmware printed nothing for {stalled:.0f} s (console's last line: "
                                f"{last[-1].strip() if last else 'none'!r})")
                    if n.node.name in retried:
                        raise BuilderError(f"{n.node.name}: {what}, a second time; {where}")
                    retried.add(n.node.name)
                    note = (f"{n.node.name}: {what} ({time.monotonic() - self.start:.0f} s into the lab; {where}); "
                            "powered on again")
                    self.notes.append(note)
                    self.progress(note)
                    n.vm.stop()
                    n.vm.start()
                    progress[n.node.name] = (0, time.monotonic())
            if time.monotonic() - t > BOOT_TIMEOUT:
                raise BuilderError("no guest agent answered within "
                                   f"{BOOT_TIMEOUT} s: {', '.join(n.node.name for n in waiting)}")
            if waiting and time.monotonic() - said >= 20:
                said = time.monotonic()
                self.progress("booting: " + ", ".join(f"{n.node.name} ({n.vm.boot_stage()})" for n in waiting))
            time.sleep(POLL)

    def _spawn(self, argv: list[str], logname: str) -> subprocess.Popen[bytes]:
        log.info("$ %s", " ".join(argv))
        with open(self.workdir / logname, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.helpers.append(proc)
        return proc

    def _start_pxe_server(self) -> None:
        """`lvs-builder pxe serve` on the bridge, as an operator runs it; wait until dnsmasq runs."""
        assert self.pxe_tree is not None
        proc = self._spawn(self.netns.argv([sys.executable, "-m", "builder", "pxe", "serve", "--dir",
                                            str(self.pxe_tree.resolve()), "--interface", BRIDGE]), "pxe-serve.log")
        logfile = self.workdir / "pxe-serve.log"
        deadline = time.monotonic() + 60
        while f"{READY} dnsmasq" not in logfile.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                lines = logfile.read_text(errors="replace").strip().splitlines()
                raise BuilderError(f"pxe serve did not start: {lines[-1] if lines else 'no output'} (see {logfile})")
            time.sleep(0.2)
        assert self.cluster.provisioning is not None
        self.progress(f"pxe serve: dnsmasq and HTTP on {BRIDGE} ({self.cluster.provisioning.server})")

    def _start_client(self) -> None:
        vs = self.cluster.virtual_services[0]
        self.client = self._spawn(self.netns.argv(
            [sys.executable, "-m", "builder.labclient", "--host", str(vs.address), "--port", str(vs.port or 80),
             "--out", str(self.client_log), "--fallback-marker", "Service degraded"]), "client.log")
        # Which MAC the client's VIP points at, over time: who answered ARP (diagnostics).
        self._spawn(["ip", "-n", self.netns.name, "-ts", "monitor", "neigh"], "neigh.log")

    # -- convergence --------------------------------------------------------------------

    def converge(self, expect_active: LabNode | None, timeout: float = CONVERGE_TIMEOUT,
                 ) -> tuple[bool, dict[str, dict[str, Any] | None], list[Answer], str]:
        """Wait until both directors pass lvs-cluster-check (one active, one standby, the
        expected one active) and the client is answered by every real server in turn."""
        deadline = time.monotonic() + timeout
        reals = [n.node.name for n in self.reals]
        checks: dict[str, dict[str, Any] | None] = {}
        why = "not checked"
        said, said_at = "", 0.0
        while True:
            for n in self.nodes:
                if n.vm.running:
                    with contextlib.suppress(BuilderError):
                        n.vm.wait_agent(max(1.0, deadline - time.monotonic()))
            # Cheap first (lvs-cluster-check costs seconds under emulation: ldirectord is Perl):
            # one director holds the VIP and its IPVS table sends to every real server.
            holders = self.vip_holders()
            checks = {}
            if len(holders) != 1 or (expect_active is not None and holders != [expect_active]):
                why = "VIP on " + (", ".join(h.node.name for h in holders) or "no director")
            elif idle := self.unweighted_reals(holders[0]):
                why = f"{holders[0].node.name}: ipvsadm does not send to " + ", ".join(idle)
            elif self.peer:  # keepalived: no lvs-cluster-check; its roles are the VIP's place
                checks = {d.node.name: {"role": "active" if d is holders[0] else "standby", "checks": []}
                          for d in self.directors}
            else:
                checks = self.cluster_checks(self.directors)
            roles = {name: (c or {}).get("role") for name, c in checks.items()}
            failing = [f"{name}: {row['check']}: {row['observed']}" for name, c in checks.items() if c
                       for row in c["checks"] if not row["ok"]]
            if not checks:
                pass
            elif any(c is None for c in checks.values()):
                why = "lvs-cluster-check gave no answer on " + ", ".join(k for k, c in checks.items() if c is None)
            elif sorted(str(v) for v in roles.values()) != ["active", "standby"]:
                why = "roles " + ", ".join(f"{k} {v}" for k, v in roles.items())
            elif expect_active is not None and roles[expect_active.node.name] != "active":
                why = f"the VIP moved away from {expect_active.node.name}"
            elif failing:
                why = failing[0]
            else:
                since = time.monotonic()
                sample: list[Answer] = []
                while time.monotonic() < min(deadline, since + 30):
                    sample = self.answers(since)
                    if len(sample) >= 2 * len(reals) or any(not a.ok for a in sample):
                        break
                    time.sleep(POLL)
                sample = sample[: 2 * len(reals)]
                if in_turn(sample, reals):
                    return True, checks, sample, ""
                why = "client answers: " + ", ".join(a.who or a.error or "?" for a in sample)
            if time.monotonic() >= deadline:
                return False, checks, [], why
            if why != said or time.monotonic() - said_at >= 20:
                said, said_at = why, time.monotonic()
                self.progress(f"waiting for the cluster: {why}")
            time.sleep(POLL)

    # -- the tutorial's functional checks -------------------------------------------------

    def functional_checks(self, report: Report) -> LabNode | None:
        ok, checks, sample, why = self.converge(None)
        if ok:
            report.healthy_s = self.now()
        first = next((a for a in read_answers(self.client_log) if a.ok), None)
        if first is not None:
            report.serving_s = first.t1 - self.start
        groups = [
            ("a", "the active director holds the VIP, the standby does not", ("VIP ", "role")),
            ("b", "ldirectord ldirectord.cf status: running on both (no heartbeat resource)", ("ldirectord ",)),
            ("c", "ipvsadm -L -n on both: the service, its scheduler, every real (Route), fallback",
             ("ipvsadm",)),
            ("d", "LVSSyncDaemonSwap master status: master running on the active only; backup on the standby",
             ("LVSSyncDaemonSwap",)),
            ("e", "heartbeat runs on both directors and each sees the other", ("heartbeat", "peer ", "node name")),
        ]
        if self.peer:  # keepalived's directors: no lvs-cluster-check, the VIP's place is their check
            holders = self.vip_holders()
            report.rows.append(Row("check", "a", "one director (keepalived's VRRP master) holds the VIP",
                                   ok and len(holders) == 1, ", ".join(h.node.name for h in holders) or why))
            groups = []
        for key, title, prefixes in groups:
            rows_ok = len(checks) == len(self.directors)
            details = [] if rows_ok else ["not checked: " + why]
            for name, c in checks.items():
                if c is None:
                    rows_ok = False
                    details.append(f"{name}: no answer")
                    continue
                mine = [r for r in c["checks"] if r["check"].startswith(prefixes)]
                rows_ok = rows_ok and bool(mine) and all(r["ok"] for r in mine)
                shown = [r for r in mine if not r["ok"]] or mine
                details.append(f"{name} ({c['role']}): " + "; ".join(
                    r["observed"] if r["ok"] else f"{r['check']}: {r['observed']} (expected {r['expected']})"
                    for r in shown[:3]))
            report.rows.append(Row("check", key, title, rows_ok, " · ".join(details)))
        reals = [n.node.name for n in self.reals]
        whos = " ".join(a.who or "x" for a in sample)
        report.rows.append(Row("check", "f", "requests to the VIP are answered by each real server in turn",
                               in_turn(sample, reals), whos or why))
        if not ok:
            report.error = f"the cluster did not become healthy within {CONVERGE_TIMEOUT} s: {why}"
            return None
        return self.vip_holder()

    # -- failure scenarios ----------------------------------------------------------------

    def scenario(self, sc: Scenario, active: LabNode) -> tuple[Row, LabNode | None]:
        """Run one scenario from a healthy cluster; return its row and the director that holds
        the VIP afterwards (None if the cluster did not converge again)."""
        standby = next(d for d in self.directors if d is not active)
        failed_reals = {"none": [], "one": self.reals[:1], "all": self.reals}[sc.reals]
        survivor = standby if sc.director else active
        expected = ({"fallback"} if sc.reals == "all" else
                    {n.node.name for n in self.reals if n not in failed_reals})
        row = Row("scenario", sc.key, sc.title, False)
        self.progress(f"scenario {sc.key}: {sc.title}")

        transfer = self._start_transfer(standby, row) if sc.transfer else None
        t_fail = time.monotonic()
        for n in failed_reals:
            n.vm.stop()
        if sc.director is Failure.KILL:
            active.vm.stop()
        elif sc.director is Failure.STOP:
            r = self.sh(active, f"systemctl --no-block stop {self.ha_service}")
            if r is None or r.exitcode != 0:
                row.detail = f"systemctl stop {self.ha_service} on {active.node.name} failed"
        pending = {n.node.name for n in failed_reals} | ({active.node.name} if sc.director else set())
        # Wait until every failure is detected, the survivor holds the VIP, and then STEADY
        # answers in a row come from the servers that should answer now.
        vip_held = sc.director is None
        settled: float | None = None
        served: float | None = None
        deadline = t_fail + FAILOVER_TIMEOUT
        while time.monotonic() < deadline:
            if pending or not vip_held:
                vip_held = self._detect(survivor, active if sc.director else None, failed_reals, pending, row,
                                        t_fail) or vip_held
            if not pending and vip_held:
                settled = settled or time.monotonic()
                since = self.answers(settled)
                if any(not good(a, expected) for a in since):
                    settled = time.monotonic()
                elif len(since) >= STEADY:
                    served = served_again(self.answers(t_fail), t_fail, since[-1].t1, expected)
                    break
            time.sleep(POLL)
        if sc.director:
            journal = self._save_journal(survivor, f"{sc.key}-{survivor.node.name}.journal")
            seen = self._seen_in_journal(survivor, active, journal, t_fail)
            if seen is not None and active.node.name in row.detected:
                row.detected[active.node.name] = seen
        row.detected_s = max(row.detected.values()) if row.detected else None
        row.served_again_s = served
        self.progress(f"scenario {sc.key}: detected " + (", ".join(
            f"{k} after {v:.1f} s" for k, v in row.detected.items()) or "nothing")
            + ("; VIP not served again" if served is None else f"; VIP served again after {served:.1f} s"))
        problems = []
        if pending:
            problems.append("not detected: " + ", ".join(sorted(pending)))
        if not vip_held:
            problems.append(f"{survivor.node.name} did not take the VIP")
        if served is None:
            problems.append("the VIP was not served again by " + ", ".join(sorted(expected)))
        t_restore = time.monotonic()

        # Restore: power the killed machines on again (they take a minute to boot: the degraded
        # state is checked meanwhile), restart the stopped heartbeat after that check.
        self.progress(f"scenario {sc.key}: restoring " + ", ".join(
            [n.node.name for n in failed_reals] + ([active.node.name] if sc.director else [])))
        for n in failed_reals:
            n.vm.start()
        if sc.director is Failure.KILL:
            active.vm.start()
        if served is not None:
            problems += self._degraded_state(survivor, standby if not sc.director else None, failed_reals)
        if sc.director is Failure.STOP:
            self.sh(active, f"systemctl start {self.ha_service}", timeout=120)
        try:
            self.wait_up([n for n in self.nodes if n in failed_reals or (n is active and sc.director is Failure.KILL)],
                         t_restore)
        except BuilderError as e:
            problems.append(str(e))
        ok, _, _, why = self.converge(survivor)
        if not ok:
            problems.append(f"did not converge again within {CONVERGE_TIMEOUT} s: {why}")
        if transfer is not None:
            problems += self._finish_transfer(transfer, row, t_fail)
        t_end = time.monotonic()
        holder = self.vip_holder()
        window = self.answers(t_fail)
        window = [a for a in window if a.t0 < t_end]
        row.sent, row.failed = len(window), sum(not a.ok for a in window)
        # Requests lost while machines boot again are reported, not failed: under emulation a
        # booting VM starves the others for seconds (seen 8-16 s after QEMU started, before the
        # guest's network was up, so no packet of the guest's can have caused it).
        during_restore = sum(not a.ok for a in window if a.t0 >= t_restore)
        row.failed_restoring = during_restore
        notes = [f"{during_restore} failed while machines came back"] if during_restore else []
        row.vip_at_end = holder.node.name if holder else None
        if holder is not survivor and ok:
            problems.append(f"the VIP is on {row.vip_at_end}, not {survivor.node.name}")
        row.seconds = t_end - t_fail
        row.ok = not problems and not row.detail
        row.detail = "; ".join(filter(None, [row.detail, *problems])) or "; ".join(
            [self._summary(failed_reals, sc, active), *self._transfer_summary(row), *notes])
        return row, (holder if ok else None)

    def _save_journal(self, n: LabNode, name: str) -> str:
        """The last minutes of a director's journal, monotonic timestamps (heartbeat's takeover,
        step by step), into the workdir: where the time between detection and service went."""
        r = self.sh(n, "journalctl -b -o short-monotonic --no-pager --since=-3min", timeout=60)
        if r is None:
            return ""
        (self.workdir / name).write_text(r.stdout + r.stderr)
        return r.stdout

    def _clock_offset(self, n: LabNode) -> float | None:
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

    def _seen_in_journal(self, survivor: LabNode, gone: LabNode, journal: str, t_fail: float) -> float | None:
        """Seconds from the failure to the survivor's own log saying it saw the director go:
        heartbeat's `node X: is dead` (power loss) or `Received shutdown notice from 'X'`
        (clean stop); keepalived's `Entering MASTER STATE`. None if not found."""
        offset = self._clock_offset(survivor)
        return None if offset is None else seen_in_journal(journal, gone.node.name, self.peer, offset - t_fail)

    # -- a download across a failover -----------------------------------------------------

    def _start_transfer(self, standby: LabNode, row: Row) -> Transfer | None:
        """Put the file on every real server, start the rate-limited download through the VIP,
        and wait until the standby's IPVS table holds the connection (sent by the active's sync
        daemon to the standby's backup daemon): that entry is what lets the standby carry the
        connection on when it takes the VIP."""
        content = transfer_content()
        expected = hashlib.sha256(content).hexdigest()
        target = f"/var/www/html{TRANSFER_PATH}"
        for n in self.reals:
            r = self.sh(n, f"seq 1 {TRANSFER_LINES} > {target}.tmp && mv {target}.tmp {target} && sha256sum {target}")
            if r is None or r.exitcode != 0 or not r.stdout.startswith(expected):
                row.detail = f"{n.node.name}: could not put the download's file in place"
                return None
        vs = self.cluster.virtual_services[0]
        log = self.workdir / "transfer.jsonl"
        log.unlink(missing_ok=True)
        proc = self._spawn(self.netns.argv(
            [sys.executable, "-m", "builder.labclient", "--transfer", "--host", str(vs.address),
             "--port", str(vs.port or 80), "--path", TRANSFER_PATH, "--rate", str(TRANSFER_RATE),
             "--timeout", str(TRANSFER_TIMEOUT), "--out", str(log)]), "transfer.log")
        tr = Transfer(proc, log, len(content), expected)
        deadline = time.monotonic() + 30
        while tr.port is None and time.monotonic() < deadline and proc.poll() is None:
            started = [e for e in read_jsonl(tr.log) if e.get("event") == "started"]
            tr.port = started[0]["port"] if started else None
            time.sleep(0.2)
        if tr.port is None:
            row.detail = "the download through the VIP did not start"
            return tr
        client = f"{self.netns.host.ip}:{tr.port}"
        deadline = time.monotonic() + 20  # the download lasts ~45 s: the failure must come well within it
        while time.monotonic() < deadline and tr.synced_to is None:
            r = self.sh(standby, "ipvsadm -L -n -c")
            if r is not None and client in r.stdout:
                tr.synced_to = standby.node.name
            else:
                time.sleep(POLL)
        self.progress(f"download {client} -> {vs.address}: started; "
                      + (f"in {tr.synced_to}'s IPVS table (synced)" if tr.synced_to else
                         f"not in {standby.node.name}'s IPVS table"))
        return tr

    def _finish_transfer(self, tr: Transfer, row: Row, t_fail: float) -> list[str]:
        """Wait for the download's end; it must be whole (size and checksum) and have gone on
        past the failure."""
        try:
            tr.proc.wait(TRANSFER_TIMEOUT + tr.size / TRANSFER_RATE)
        except subprocess.TimeoutExpired:
            tr.proc.kill()
            tr.proc.wait()
        done = next((e for e in read_jsonl(tr.log) if e.get("event") == "done"), None)
        row.transfer = {"bytes_expected": tr.size, "sha256_expected": tr.sha256, "synced_to": tr.synced_to,
                        **({k: done.get(k) for k in ("ok", "bytes", "sha256", "error")} if done else {}),
                        "ended_after_failure_s": done["t1"] - t_fail if done else None}
        problems = []
        if tr.synced_to is None:
            problems.append("the download's connection never reached the standby's IPVS table (sync daemon)")
        if done is None:
            problems.append("the download did not end")
        elif not done["ok"] or done["bytes"] != tr.size or done["sha256"] != tr.sha256:
            problems.append(f"the download broke: {done['bytes']} of {tr.size} bytes"
                            + (f", {done['error']}" if done.get("error") else "")
                            + ("" if done["sha256"] == tr.sha256 else ", checksum differs"))
        elif done["t1"] <= t_fail:
            problems.append("the download ended before the failure: it proves nothing (raise its size)")
        return problems

    @staticmethod
    def _transfer_summary(row: Row) -> list[str]:
        t = row.transfer
        if not t:
            return []
        return [f"download of {t['bytes_expected'] / 1e6:.1f} MB across the failover intact (sha256), "
                f"synced to {t['synced_to']}, ended {t['ended_after_failure_s']:.0f} s after the failure"]

    def _summary(self, failed_reals: list[LabNode], sc: Scenario, active: LabNode) -> str:
        parts = [f"{n.node.name} killed" for n in failed_reals]
        if sc.director:
            parts.append(f"{active.node.name} " + ("killed" if sc.director is Failure.KILL else
                                                   f"{self.ha_service.removesuffix('.service')} stopped"))
        return ", ".join(parts) + "; restored, converged"

    def _detect(self, survivor: LabNode, dead_director: LabNode | None, failed_reals: list[LabNode],
                pending: set[str], row: Row, t_fail: float) -> bool:
        """One poll of the survivor: does it hold the VIP (for a failed director: until its log
        is read, that counts as detected), has ldirectord taken the failed real servers out
        (weight 0 or gone) of a live IPVS table? Returns whether the survivor holds the VIP."""
        iface = self.cluster.interface_of(survivor.node)
        # As little as will do: the survivor has one emulated CPU, and what the lab runs there
        # slows its takeover. When it saw the director go is read from its log afterwards.
        reals_pending = any(n.node.name in pending for n in failed_reals)
        script = f"ip -4 -o address show dev {iface}" + ("; echo ---; ipvsadm -L -n" if reals_pending else "")
        r = self.sh(survivor, script, timeout=30)
        if r is None:
            return False
        now = time.monotonic() - t_fail
        addresses, table_text = (r.stdout.split("---\n") + [""])[:2]
        vip_held = f" {self.cluster.vips[0]}/" in addresses
        if dead_director is not None and dead_director.node.name in pending and vip_held:
            row.detected[dead_director.node.name] = now
            pending.discard(dead_director.node.name)
        table = self.check.parse_ipvsadm(table_text)
        for n in failed_reals:
            if n.node.name not in pending:
                continue
            for service in table.values():
                listed = [k for k in service["reals"] if k.split(":")[0] == str(n.node.address)]
                if not listed or all(service["reals"][k]["weight"] == 0 for k in listed):
                    row.detected[n.node.name] = now
                    pending.discard(n.node.name)
                    break
        return vip_held

    def _degraded_state(self, survivor: LabNode, standby: LabNode | None, failed_reals: list[LabNode]) -> list[str]:
        """What lvs-cluster-check says of the directors while machines are down."""
        if self.peer:  # keepalived: no lvs-cluster-check; the survivor's table must skip the dead
            idle = set(self.unweighted_reals(survivor))
            return [f"{survivor.node.name}: ipvsadm still sends to {n.node.name}" for n in failed_reals
                    if n.node.name not in idle]
        problems = []
        both = self.cluster_checks([survivor] + ([standby] if standby else []))
        c = both[survivor.node.name]
        if c is None:
            return [f"lvs-cluster-check gave no answer on {survivor.node.name}"]
        if c["role"] != "active":
            problems.append(f"{survivor.node.name} is {c['role']}, not active")
        for row in c["checks"]:
            if row["check"].startswith(("VIP ", "ldirectord ", "LVSSyncDaemonSwap", "ipvsadm: TCP",
                                        "ipvsadm: UDP", "ipvsadm: FWM")) and not row["ok"]:
                problems.append(f"{survivor.node.name}: {row['check']}: {row['observed']}")
        failed = {str(n.node.address) for n in failed_reals}
        serving = False
        for service in c["ipvs"].values():
            for address, real in service["reals"].items():
                host = address.split(":")[0]
                if host in failed and real["weight"] > 0:
                    problems.append(f"{survivor.node.name}: ipvsadm still sends to {address}")
                if host not in failed and host != "127.0.0.1":
                    serving = serving or real["weight"] > 0
        fallback_rows = [r for r in c["checks"] if r["check"].startswith("ipvsadm: fallback")]
        problems += [f"{survivor.node.name}: {r['check']}: {r['observed']} (expected {r['expected']})"
                     for r in fallback_rows if not r["ok"]]
        if len(failed_reals) < len(self.reals) and not serving:
            problems.append(f"{survivor.node.name}: no surviving real server has weight")
        if standby is not None:  # no director failed: the standby stays a standby
            s = both[standby.node.name]
            if s is None:
                problems.append(f"lvs-cluster-check gave no answer on {standby.node.name}")
            else:
                problems += [f"{standby.node.name}: {r['check']}: {r['observed']}" for r in s["checks"]
                             if not r["ok"] and not r["check"].startswith("ipvsadm")]
        return problems

    # -- rolling upgrade ----------------------------------------------------------------

    def _start_repo_server(self, repo: Path) -> None:
        """`lvs-builder repo serve` on the client's address in the namespace, as a small site runs it."""
        logfile = self.workdir / "repo-serve.log"
        proc = self._spawn(self.netns.argv([sys.executable, "-m", "builder", "repo", "serve", "--dir",
                                            str(repo.resolve()), "--address", str(self.netns.host.ip),
                                            "--port", str(REPO_PORT)]), logfile.name)
        deadline = time.monotonic() + 60
        while REPO_READY not in logfile.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                lines = logfile.read_text(errors="replace").strip().splitlines()
                raise BuilderError(f"repo serve did not start: {lines[-1] if lines else 'no output'} (see {logfile})")
            time.sleep(0.2)
        self.progress(f"repo serve: {repo} at http://{self.netns.host.ip}:{REPO_PORT}/")

    def _step(self, report: Report, key: str, title: str, body: Callable[[], list[str]],
              expect_active: LabNode | None) -> bool:
        """One step of the rolling upgrade: run it, wait for the cluster to be healthy again,
        count the client's failed requests from its start to then."""
        self.progress(f"upgrade {key}: {title}")
        t = time.monotonic()
        try:
            problems = body()
        except BuilderError as e:
            problems = [str(e)]
        ok, _, _, why = self.converge(expect_active)
        if not ok:
            problems.append(f"did not converge again within {CONVERGE_TIMEOUT} s: {why}")
        window = [a for a in self.answers(t) if a.t0 < time.monotonic()]
        holder = self.vip_holder()
        slowest = max((a.t1 - a.t0 for a in window if a.ok), default=0.0)
        row = Row("upgrade", key, title, not problems,
                  "; ".join(problems) or f"done; longest wait for an answer {slowest:.1f} s",
                  sent=len(window), failed=sum(not a.ok for a in window),
                  vip_at_end=holder.node.name if holder else None, seconds=time.monotonic() - t)
        report.rows.append(row)
        self.progress(f"upgrade {key}: {'pass' if row.ok else 'FAIL'} ({row.seconds:.0f} s, "
                      f"{row.failed} of {row.sent} requests failed; {row.detail})")
        return ok

    def _apt(self, n: LabNode, sources: str, version: str) -> list[str]:
        """apt-get install the node's role package from the repository; its log into the workdir."""
        pkg = n.role.package
        r = self.sh(n, "DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confdef "
                       f"-o Dpkg::Options::=--force-confold {apt_only(sources)} install {pkg} 2>&1; "
                       f"echo \"exit $?\"; dpkg-query -W -f '${{Version}}\\n' {pkg}", timeout=UPGRADE_STEP_TIMEOUT)
        if r is None:
            return [f"{n.node.name}: no answer from its guest agent"]
        (self.workdir / f"upgrade-{n.node.name}.log").write_text(r.stdout + r.stderr)
        lines = r.stdout.strip().splitlines()
        if "exit 0" not in lines[-2:-1]:
            return [f"{n.node.name}: apt-get install {pkg} failed (see {self.workdir}/upgrade-{n.node.name}.log)"]
        if lines[-1] != version:
            return [f"{n.node.name}: {pkg} is at {lines[-1]} after apt-get install, not {version}"]
        return []

    def _maintenance(self, real: LabNode, on: bool) -> list[str]:
        """Put a real server into ldirectord's maintenance on both directors (or take it out)
        and wait until both IPVS tables say so (weight 0, or weighted again)."""
        action = "touch" if on else "rm -f"
        for d in self.directors:
            r = self.sh(d, f"{action} {MAINTENANCE_DIR}/{real.node.address}")
            if r is None or r.exitcode != 0:
                return [f"{d.node.name}: {action} {MAINTENANCE_DIR}/{real.node.address} failed"]
        deadline = time.monotonic() + 120
        waiting = list(self.directors)
        while waiting and time.monotonic() < deadline:
            waiting = [d for d in waiting if (real.node.name in self.unweighted_reals(d)) != on]
            if waiting:
                time.sleep(POLL)
        return [f"{d.node.name}: ipvsadm still {'sends to' if on else 'does not send to'} {real.node.name} "
                "after 120 s" for d in waiting]

    def upgrade(self, report: Report, repo: Path, new: Cluster, active: LabNode) -> None:
        """The documented rolling upgrade (README: upgrades) to `new`, published in `repo`:
        every node reads the repository; the standby director upgrades (its heartbeat restarts
        with the new configuration) and takes over (lvs-takeover), the former active upgrades;
        then each real server, one at a time, in ldirectord's maintenance on both directors
        (weight 0) while it upgrades. The client requests the VIP throughout."""
        version = new.package.version
        sources = sources_name(self.cluster)
        entry = (repo / sources).read_text()
        self._start_repo_server(repo)

        def publish() -> list[str]:
            def one(n: LabNode) -> list[str]:
                r = self.sh(n, f"cat > /etc/apt/sources.list.d/{sources} <<'LVS_EOF'\n{entry}LVS_EOF\n"
                               f"apt-get {apt_only(sources)} update 2>&1 && apt-cache policy {n.role.package}",
                            timeout=UPGRADE_STEP_TIMEOUT)
                if r is None or r.exitcode != 0:
                    return [f"{n.node.name}: apt-get update from the repository failed: "
                            + (r.stdout.strip().splitlines()[-1] if r and r.stdout.strip() else "no answer")]
                if f"Candidate: {version}" not in r.stdout:
                    return [f"{n.node.name}: apt does not offer {n.role.package} {version}"]
                return []
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                return [p for ps in pool.map(one, self.nodes) for p in ps]

        standby = next(d for d in self.directors if d is not active)
        steps: list[tuple[str, str, Callable[[], list[str]], LabNode]] = [
            ("u0", f"publish {version}: its sources entry on every node (Signed-By), apt-get update",
             publish, active),
            ("u1", f"{standby.node.name} (standby): apt-get install lvs-director {version}; "
                   "its heartbeat restarts with the new ha.cf",
             lambda: self._apt(standby, sources, version), active),
            ("u2", f"handover: lvs-takeover on {standby.node.name} (VIP claimed there, then hb_takeover; "
                   f"{active.node.name} releases)",
             lambda: self._takeover(standby), standby),
            ("u3", f"{active.node.name} (now standby): apt-get install lvs-director {version}",
             lambda: self._apt(active, sources, version), standby),
        ]
        for i, real in enumerate(self.reals):
            steps.append((f"u{4 + i}", f"{real.node.name}: maintenance on both directors (weight 0), "
                                       f"apt-get install lvs-realserver {version}, back in service",
                          functools.partial(self._upgrade_real, real, sources, version), standby))
        for key, title, body, expect in steps:
            if not self._step(report, key, title, body, expect):
                report.error = f"upgrade step {key} left the cluster unhealthy; the remaining steps did not run"
                return
        report.rows.append(self._upgraded(new))

    def _takeover(self, standby: LabNode) -> list[str]:
        r = self.sh(standby, "lvs-takeover", timeout=60)
        if r is None or r.exitcode != 0:
            why = (r.stdout + r.stderr).strip() if r is not None else "no answer"
            return [f"{standby.node.name}: lvs-takeover failed: {why}"]
        return []

    def _upgrade_real(self, real: LabNode, sources: str, version: str) -> list[str]:
        return (self._maintenance(real, True) or self._apt(real, sources, version)) + self._maintenance(real, False)

    def _upgraded(self, new: Cluster) -> Row:
        """Every node runs the new version, and both directors' heartbeat the new ha.cf."""
        version = new.package.version
        warntime = f"{new.heartbeat.timing.warntime:g}"
        problems = []
        for n in self.nodes:
            r = self.sh(n, f"dpkg-query -W -f '${{Version}}' {n.role.package}")
            if r is None or r.stdout.strip() != version:
                problems.append(f"{n.node.name}: {n.role.package} {r.stdout.strip() if r else '?'}")
        for d in self.directors:
            r = self.sh(d, "cl_status hbparameter -p warntime")
            live = r.stdout.strip() if r is not None else "?"
            if live not in (warntime, f"{new.heartbeat.timing.warntime * 1000:g}ms", f"{warntime}s"):
                problems.append(f"{d.node.name}: heartbeat runs warntime {live}, not {warntime}")
        return Row("upgrade", "u-end", f"every node at {version}; heartbeat on both directors runs the new ha.cf "
                                       f"(warntime {warntime})", not problems,
                   "; ".join(problems) or f"{len(self.nodes)} nodes at {version}; warntime {warntime} on both")

    # -- everything ---------------------------------------------------------------------

    def run(self, scenarios: list[Scenario], report: Report) -> None:
        self.boot(report)
        active = self.functional_checks(report)
        if active is None:
            return
        self.progress(f"healthy: {active.node.name} holds the VIP; functional checks "
                      + ("passed" if all(r.ok for r in report.rows) else "FAILED"))
        for sc in scenarios:
            row, holder = self.scenario(sc, active)
            report.rows.append(row)
            self.progress(f"scenario {sc.key}: {'pass' if row.ok else 'FAIL'} ({row.detail})")
            if holder is None:
                report.error = f"scenario {sc.key} left the cluster unhealthy; the remaining scenarios did not run"
                return
            active = holder
        if not self.peer:
            report.late_heartbeat_ms = self.late_heartbeats()
        if self.upgrade_to is not None:
            self.upgrade(report, *self.upgrade_to, active)

    def late_heartbeats(self) -> dict[str, int]:
        """Per director, the longest `Late heartbeat: Node X: interval N ms` heartbeat logged this
        boot (0 if none): how close the lab's load came to a false failover."""
        out = {}
        for d in self.directors:
            r = self.sh(d, "journalctl -b --no-pager -o cat -g 'Late heartbeat'", timeout=60)
            if r is not None:
                out[d.node.name] = max((int(m) for m in re.findall(r"interval (\d+) ms", r.stdout)), default=0)
        return out


@contextlib.contextmanager
def interrupts_as_errors() -> Iterator[None]:
    """SIGTERM and SIGHUP end the lab like Ctrl-C: through the tear-down."""
    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_lab(cluster: Cluster, images: dict[Role, Path], workdir: Path, scenarios: list[Scenario],
            progress: Callable[[str], None] = lambda s: None, pxe_tree: Path | None = None,
            peer: bool = False, upgrade_to: tuple[Path, Cluster] | None = None) -> Report:
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"), ("ip", "iproute2")):
        require(tool, pkg)
    for role, image in images.items():
        if not image.exists():
            raise BuilderError(f"{image}: no {role.value} image (build-image {role.value})")
    report = Report(cluster.name, cluster.release.value, boot="pxe" if pxe_tree is not None else "disk",
                    directors="keepalived (bench peer)" if peer else "lvs-director")
    start = time.monotonic()
    with interrupts_as_errors(), Lab(cluster, images, workdir, progress, pxe_tree, peer,
                                                upgrade_to) as lab:
        try:
            lab.run(scenarios, report)
        except BuilderError as e:
            report.error = str(e)
        except Exception as e:  # noqa: BLE001 - a bug of ours still ends in a report, with its traceback
            trace = workdir / "lab-error.txt"
            trace.write_text(traceback.format_exc())
            report.error = f"{type(e).__name__}: {e} (a bug in the lab; traceback in {trace})"
        finally:
            report.total_s = time.monotonic() - start
            report.notes = lab.notes
    return report

