"""A fake cluster behind the lab's seam (builder.lab.machines.Machines), on a simulated clock:
two directors that claim the VIPs when they stop hearing each other for deadtime and settle a
split when they hear each other again, ldirectord's weights following each real server's
health, and a client per virtual service that the director its ARP entry names answers. It
lets the fast tier run the lab's scenario, fault and check logic end to end in seconds; the
real cluster is proven by the slow tier's lab."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from builder.lab import probes, traffic
from builder.lab.stack import Heartbeat
from builder.model import Cluster, Node, Role

DT = 0.1
DEADTIME = 2.5
BOOT_S = 20.0
CHECK_S = 3.0       # ldirectord: a real server's weight follows its health after this long
SETTLE_S = 1.0      # a split is settled this long after the two hear each other again
SLOW_RELEASE_S = 40.0  # "slow-release": the keeper let go this late (the heal before its watcher saw ARP)
SYNC_DELAY = 8.0    # a director that claimed the VIPs runs the sync daemon's master role this long after
IPFAIL_S = 6.0      # ipfail: a director that lost its ping nodes while its peer has them yields this long after


@dataclass(eq=False)
class FakeNode:
    node: Node
    role: Role
    mac: str
    powered: bool = True
    booted_at: float = 0.0
    frozen: bool = False
    link: bool = True
    isolated: bool = False
    stack_running: bool = True
    web: str = "up"          # "up" | "stopped" | "hung"
    page_ok: bool = True
    held: frozenset[str] = frozenset()
    claimed_at: float = 0.0
    last_heard: float = 0.0
    both_since: float | None = None
    link_down_at: float = 0.0
    generation: int = 1      # heartbeat's, raised on every start of the stack
    panic: str | None = None  # its console's panic line (a panicked guest is frozen too)
    journal: list[tuple[float, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.name


class FakeWatch:
    def __init__(self, lab: FakeLab) -> None:
        self.lab = lab
        self.samples: list[probes.Sample] = []
        lab.watches.append(self)

    def since(self, t: float) -> list[probes.Sample]:
        return [s for s in self.samples if s.t >= t]

    def stop(self) -> None:
        self.lab.watches.remove(self)


class FakeLab:
    """The lab's machines, simulated. `broken` names a behaviour to break, for the tests that
    show a broken cluster fails its row: "no-takeover" (the standby never claims),
    "second-vip-unchecked" (the second virtual service's reals never get weight), "no-settle"
    (after a split both directors keep the VIPs), "heal-gap" (after a split both give them up
    and restart), "slow-release" (after a split both hold them for 40 s), "half-way" (the
    second director runs a new ha.cf with a serial link the first does not send on yet)."""

    def __init__(self, cluster: Cluster, broken: str = "") -> None:
        self.cluster = cluster
        self.stack = Heartbeat()
        self.services = traffic.services(cluster)
        self.vips = [str(v) for v in cluster.vips]
        self.notes: list[str] = []
        self.broken = broken
        self.t = 1000.0
        self.t0 = self.t
        self.said: list[str] = []
        self.journals_saved: list[str] = []
        self.progress = self.said.append
        self._nodes = [FakeNode(d, Role.DIRECTOR, f"52:54:00:0f:00:{i:02x}") for i, d in enumerate(cluster.directors)]
        self._nodes += [FakeNode(r, Role.REALSERVER, f"52:54:00:0f:01:{i:02x}")
                        for i, r in enumerate(cluster.real_servers)]
        self.arp: dict[str, str] = {}
        self.log: dict[str, list[traffic.Answer]] = {s.label: [] for s in self.services}
        self.rr = {s.label: itertools.count() for s in self.services}
        self.bad_since: dict[tuple[str, str], float | None] = {}
        self.weight: dict[tuple[str, str], int] = {}
        self.watches: list[FakeWatch] = []
        first = self._nodes[0]
        self._claim(first)
        for d in self.directors:
            d.last_heard = self.t
            for svc in self.services:
                for r, w in svc.weights.items():
                    self.weight[(d.name, f"{svc.label}/{r}")] = w
        self._next_request = self.t
        self._next_sample = self.t

    # -- the model ------------------------------------------------------------------------

    @property
    def nodes(self) -> list[FakeNode]:
        return self._nodes

    @property
    def directors(self) -> list[FakeNode]:
        return [n for n in self._nodes if n.role is Role.DIRECTOR]

    @property
    def reals(self) -> list[FakeNode]:
        return [n for n in self._nodes if n.role is Role.REALSERVER]

    @property
    def macs(self) -> dict[str, str]:
        return {d.name: d.mac for d in self.directors}

    def up(self, n: FakeNode) -> bool:
        return n.powered and self.t >= n.booted_at

    def alive(self, d: FakeNode) -> bool:
        return self.up(d) and not d.frozen and d.stack_running

    def reachable(self, n: FakeNode) -> bool:
        return self.up(n) and not n.frozen and n.link

    def hears(self, a: FakeNode, b: FakeNode) -> bool:
        """heartbeat's packets pass: over the segment, or over a second path (a serial link, a
        link of the directors' own) whatever the segment does."""
        return (self.alive(a) and self.alive(b)
                and (len(self.cluster.heartbeat_paths) > 1 or a.link and b.link and not (a.isolated and b.isolated)))

    def _claim(self, d: FakeNode) -> None:
        d.held = frozenset(self.vips)
        d.claimed_at = self.t
        for v in self.vips:
            self.arp[v] = d.mac  # gratuitous ARP

    def _say(self, d: FakeNode, text: str) -> None:
        d.journal.append((self.t - d.booted_at, f"{d.name} heartbeat: {text}"))

    def healthy(self, r: FakeNode) -> bool:
        return self.up(r) and r.web == "up" and r.page_ok

    def tick(self) -> None:
        self.t += DT
        a, b = self.directors
        for d, peer in ((a, b), (b, a)):
            if not self.alive(d):
                continue
            if self.hears(d, peer):
                d.last_heard = self.t
            elif self.t - d.last_heard > DEADTIME and not d.held and self.broken != "no-takeover":
                self._say(d, f"WARN: node {peer.name}: is dead")
                self._claim(d)
        for d, peer in ((a, b), (b, a)):  # ipfail: the one that cannot reach the ping nodes yields
            if (self.cluster.heartbeat.ping_nodes and self.hears(d, peer) and d.held and not d.link and peer.link
                    and self.t - d.link_down_at >= IPFAIL_S):
                self._say(d, "ipfail: giving up all resources (ping nodes unreachable here)")
                d.held = frozenset()
                self._claim(peer)
        if self.hears(a, b) and not a.held and not b.held and self.t - max(a.booted_at, b.booted_at) > DEADTIME:
            self._claim(a)  # a cluster that starts together: haresources' node takes the group
        if self.hears(a, b) and a.held and b.held and self.broken != "no-settle":
            a.both_since = a.both_since or self.t
            if self.t - a.both_since >= (SLOW_RELEASE_S if self.broken == "slow-release" else SETTLE_S):
                keep, drop = (a, b) if a.claimed_at <= b.claimed_at else (b, a)
                drop.held = frozenset()
                drop.generation += 1  # heartbeat restarts itself on the one that gave up
                if self.broken == "heal-gap":  # heartbeat's own heal: both give up, restart, wait
                    keep.held = frozenset()
                    keep.generation += 1
                    a.booted_at = b.booted_at = self.t
                else:
                    self._claim(keep)
                a.both_since = None
        else:
            a.both_since = None
        for d in self.directors:
            for svc in self.services:
                for r in self.reals:
                    if r.name not in svc.weights:
                        continue
                    key = (d.name, f"{svc.label}/{r.name}")
                    if self.broken == "second-vip-unchecked" and svc.index == 1:
                        self.weight[key] = 0  # ldirectord never finds this service's reals healthy
                        continue
                    if self.healthy(r):
                        self.bad_since[key] = None
                        self.weight[key] = svc.weights[r.name]
                        continue
                    since = self.bad_since.get(key) or self.t
                    self.bad_since[key] = since
                    if self.t - since >= CHECK_S:
                        self.weight[key] = 0
        if self.t >= self._next_request:
            self._next_request += 0.2
            for svc in self.services:
                self.log[svc.label].append(self._request(svc))
        if self.t >= self._next_sample:
            self._next_sample += 1.0
            for w in self.watches:
                for d in self.directors:
                    w.samples.append(probes.Sample(self.t, d.name, self.held(d)))
                w.samples.append(probes.Sample(self.t, "client", None, dict(self.arp)))

    def _request(self, svc: traffic.Service) -> traffic.Answer:
        v = str(svc.vs.address)
        d = next((d for d in self.directors if d.mac == self.arp.get(v)), None)
        if d is None or not self.reachable(d) or v not in d.held:
            return traffic.Answer(self.t, self.t + 3, False, None, "timed out")
        live = [r for r in self.reals if self.weight.get((d.name, f"{svc.label}/{r.name}"), 0) > 0]
        if not live:
            ok = svc.fallback
            return traffic.Answer(self.t, self.t + 0.05, ok, "fallback" if ok else None, None if ok else "refused")
        if svc.vs.scheduler.value != "rr":  # weighted: each server as often as its weight says
            live = [r for r in live for _ in range(self.weight[(d.name, f"{svc.label}/{r.name}")])]
        r = live[next(self.rr[svc.label]) % len(live)]
        if not self.up(r) or r.web == "hung":
            return traffic.Answer(self.t, self.t + 5, False, None, "timed out")
        if r.web == "stopped":
            return traffic.Answer(self.t, self.t + 0.01, False, None, "refused")
        return traffic.Answer(self.t, self.t + 0.05, True, r.name, None)

    # -- Machines: the clock ----------------------------------------------------------------

    def now(self) -> float:
        return self.t

    def since_start(self) -> float:
        return self.t - self.t0

    def sleep(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            self.tick()

    # -- Machines: observing -------------------------------------------------------------

    def held(self, n: FakeNode, timeout: float = 30) -> frozenset[str] | None:
        return n.held if self.up(n) and not n.frozen else None

    def instance(self, n: FakeNode) -> str | None:
        return str(n.generation) if self.up(n) and n.stack_running else None

    def held_all(self) -> dict[str, frozenset[str] | None]:
        return {d.name: self.held(d) for d in self.directors}

    def ipvs(self, n: FakeNode) -> dict[str, Any] | None:
        if not self.up(n) or n.frozen:
            return None
        table: dict[str, Any] = {}
        for svc in self.services:
            reals = {f"{r.node.address}:80": {"forward": "Route",
                                              "weight": self.weight[(n.name, f"{svc.label}/{r.name}")]}
                     for r in self.reals if r.name in svc.weights}
            if svc.fallback and not any(x["weight"] for x in reals.values()):
                reals["127.0.0.1:80"] = {"forward": "Local", "weight": 1}
            table[f"TCP  {svc.label}"] = {"scheduler": svc.vs.scheduler.value, "reals": reals}
        return table

    def check(self, n: FakeNode, role_hint: str = "") -> dict[str, Any] | None:
        if not self.up(n) or n.frozen:
            return None
        peer = next(d for d in self.directors if d is not n)
        role = "active" if n.held == frozenset(self.vips) else "standby" if not n.held else "split"
        rows = [{"group": "heartbeat", "check": f"peer {peer.name}", "ok": self.hears(n, peer),
                 "observed": "active" if self.hears(n, peer) else "dead", "expected": "active"},
                {"group": "vip", "check": "VIPs", "ok": role != "split", "observed": role, "expected": "all or none"}]
        if self.broken == "half-way" and self.hears(n, peer):
            links = "/dev/ttyS1 dead, eth0 up" if n is self.directors[1] else "eth0 up"
            rows.append({"group": "heartbeat", "check": f"heartbeat's links to {peer.name}", "ok": " dead" not in links,
                         "observed": links, "expected": "every one up"})
        # heartbeat turns the sync daemon master some seconds after the VIPs were claimed
        master = role == "active" and self.t - n.claimed_at >= SYNC_DELAY
        rows.append({"group": "sync", "check": "LVSSyncDaemonSwap master status", "ok": master == (role == "active"),
                     "observed": "master running" if master else "master stopped",
                     "expected": "master running" if role == "active" else "master stopped"})
        table = self.ipvs(n) or {}
        for label, service in table.items():
            for address, real in service["reals"].items():
                if address.startswith("127."):
                    continue
                rows.append({"group": "ipvs-real", "check": f"ipvsadm: -> {address} ({label})",
                             "ok": real["weight"] > 0, "observed": f"weight {real['weight']}",
                             "expected": "weight > 0"})
        return {"role": role, "checks": rows, "ipvs": table}

    def answers(self, service: traffic.Service, since: float = 0.0) -> list[traffic.Answer]:
        return [a for a in self.log[service.label] if a.t0 >= since and a.t1 <= self.t]

    def neighbours(self) -> dict[str, str]:
        return dict(self.arp)

    def watch(self) -> FakeWatch:
        return FakeWatch(self)

    def save_journal(self, n: FakeNode, name: str, minutes: int = 3) -> str:
        self.journals_saved.append(name)
        return "".join(f"[{t:12.6f}] {text}\n" for t, text in n.journal)

    def clock_offset(self, n: FakeNode) -> float | None:
        return n.booted_at if self.up(n) and not n.frozen else None

    def wait_up(self, nodes: list[FakeNode], t: float) -> None:
        while not all(self.up(n) for n in nodes):
            self.sleep(1.0)

    def wait_agents(self, deadline: float) -> None:
        pass

    def panicked(self, n: FakeNode) -> str | None:
        return n.panic if n.powered else None

    def start_download(self, standby: FakeNode) -> tuple[Any, list[str]]:
        return None, []

    # -- Machines: acting --------------------------------------------------------------------

    def power_off(self, n: FakeNode) -> str | None:
        n.powered, n.held, n.frozen, n.panic = False, frozenset(), False, None
        return None

    def power_on(self, n: FakeNode) -> str | None:
        n.powered, n.booted_at, n.journal = True, self.t + BOOT_S, []
        n.generation += 1
        n.stack_running, n.web, n.page_ok, n.link = True, "up", True, True
        n.last_heard = self.t + BOOT_S  # initdead
        return None

    def freeze(self, n: FakeNode) -> str | None:
        n.frozen = True
        return None

    def thaw(self, n: FakeNode) -> str | None:
        n.frozen = False
        return None

    def set_link(self, n: FakeNode, up: bool) -> str | None:
        n.link = up
        n.link_down_at = self.t
        return None

    def isolate(self, nodes: list[FakeNode], on: bool) -> str | None:
        for n in nodes:
            n.isolated = on
        return None

    def director_stack(self, n: FakeNode, running: bool) -> str | None:
        peer = next(d for d in self.directors if d is not n)
        if not running and n.held:  # lvs-director's handover: the peer claims first
            if self.alive(peer):
                self._say(peer, f"{n.name} hands over")
                self._claim(peer)
            n.held = frozenset()
        n.stack_running = running
        if running:
            n.last_heard = self.t
            n.generation += 1
        return None

    def web(self, n: FakeNode, action: str) -> str | None:
        n.web = {"stop": "stopped", "start": "up", "hang": "hung", "resume": "up"}[action]
        return None

    def page(self, n: FakeNode, broken: bool) -> str | None:
        n.page_ok = not broken
        return None
