"""What the lab observes while a fault lasts: which director holds which VIP (each director's
own addresses, sampled once a second by a thread per director), and which MAC the client's
neighbour table gives each VIP. The figures (seconds with two holders, with none, with the
client's ARP entry on another machine than the holder) are pure functions of the samples."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

STEP = 0.1        # resolution of the figures, seconds
# A sample older than this says nothing: the director's agent was busy (lvs-cluster-check
# holds it for seconds) and the thread had no answer since. Unknown is neither a holder nor not.
FRESH = 5.0


@dataclass(frozen=True)
class Sample:
    t: float                       # lab clock (monotonic), the middle of the round trip
    source: str                    # a director's name, or "client" for the neighbour table
    held: frozenset[str] | None    # VIPs held (directors); None: no answer
    macs: dict[str, str] = field(default_factory=dict)  # client: VIP -> MAC


def held_vips(addresses: dict[str, list[str]], interface: str, vips: Iterable[str]) -> frozenset[str]:
    """The VIPs among an interface's IPv4 addresses (interface -> addresses, an address
    labelled `eth0:1` counting as eth0's)."""
    mine = {a for name, addrs in addresses.items() if name.split(":", 1)[0] == interface for a in addrs}
    return frozenset(v for v in vips if v in mine)


def neighbour_macs(ip_json: str, vips: Iterable[str]) -> dict[str, str]:
    """VIP -> MAC from `ip -j neigh show` (entries that have one: not FAILED/INCOMPLETE)."""
    try:
        entries = json.loads(ip_json or "[]")
    except ValueError:
        return {}
    wanted = set(vips)
    return {e["dst"]: e["lladdr"].lower() for e in entries if e.get("dst") in wanted and e.get("lladdr")}


class Watching(Protocol):
    def since(self, t: float) -> list[Sample]: ...
    def stop(self) -> None: ...


class Watch:
    """Samples every director's VIPs and the client's neighbour table once a second, each in a
    thread of its own (a frozen director's agent does not answer: its thread waits, the others
    go on). `readers`: name -> a call returning the VIPs held, or None if no answer."""

    def __init__(self, readers: dict[str, Callable[[], frozenset[str] | None]],
                 neighbours: Callable[[], dict[str, str]], clock: Callable[[], float] = time.monotonic,
                 interval: float = 1.0) -> None:
        self.readers = readers
        self.neighbours = neighbours
        self.clock = clock
        self.interval = interval
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def since(self, t: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.t >= t]

    def _loop(self, source: str, read: Callable[[], object]) -> None:
        while not self._stop.is_set():
            t0 = self.clock()
            got = read()
            t = (t0 + self.clock()) / 2
            if source == "client":
                assert isinstance(got, dict)
                self.add(Sample(t, source, None, got))
            else:
                self.add(Sample(t, source, got if isinstance(got, frozenset) else None))
            self._stop.wait(max(0.0, self.interval - (self.clock() - t0)))

    def start(self) -> None:
        for name, read in [*self.readers.items(), ("client", self.neighbours)]:
            th = threading.Thread(target=self._loop, args=(name, read), daemon=True, name=f"watch-{name}")
            th.start()
            self._threads.append(th)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(15)  # a sample under way finishes (the agent's own timeout bounds it)
        self._threads = []


def _state_at(samples: list[Sample], t: float) -> Sample | None:
    """The latest sample at or before t, if fresh."""
    best = None
    for s in samples:
        if s.t <= t:
            best = s
        else:
            break
    return best if best is not None and t - best.t <= FRESH else None


@dataclass(frozen=True)
class HolderFigures:
    two_holders_s: float
    no_holder_s: float
    arp_stale_s: float


def holder_figures(samples: list[Sample], vips: list[str], macs: dict[str, str], t0: float, t1: float,
                   cut_off: Sequence[tuple[str, float, float]] = ()) -> HolderFigures:
    """Over [t0, t1): the seconds in which two directors held one VIP at once, in which none did,
    and in which one did but the client's entry for it named another MAC (the worst VIP each).
    A director cut off from the segment (`cut_off`: name, from, to: a link down) holds nothing
    anyone can reach; one whose agent said nothing (frozen, powered off) holds nothing; one with
    no fresh sample at all is unknown, and a moment with no known holder but an unknown director
    is not counted as one with no holder."""
    by_source: dict[str, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.t):
        by_source.setdefault(s.source, []).append(s)
    client = by_source.pop("client", [])
    two = {v: 0.0 for v in vips}
    none = {v: 0.0 for v in vips}
    stale = {v: 0.0 for v in vips}
    t = t0
    while t < t1:
        arp = _state_at(client, t)
        for v in vips:
            holders = []
            unknown = False
            for name, ss in by_source.items():
                st = _state_at(ss, t)
                if st is None:
                    unknown = True
                    continue
                if st.held is None or v not in st.held:
                    continue
                if any(n == name and a <= t < b for n, a, b in cut_off):
                    continue
                holders.append(name)
            if len(holders) >= 2:
                two[v] += STEP
            elif not holders:
                none[v] += 0.0 if unknown else STEP
            elif arp is not None and arp.macs.get(v) != macs.get(holders[0]):
                stale[v] += STEP
        t += STEP
    return HolderFigures(round(max(two.values(), default=0.0), 1), round(max(none.values(), default=0.0), 1),
                         round(max(stale.values(), default=0.0), 1))


def client_neighbours(netns: str, vips: list[str]) -> dict[str, str]:
    """The client's neighbour table (the lab's namespace, host side): VIP -> MAC."""
    try:
        out = subprocess.run(["ip", "-n", netns, "-j", "neigh", "show"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return neighbour_macs(out, vips)
