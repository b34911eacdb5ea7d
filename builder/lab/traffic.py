"""What the lab's clients saw: one client per virtual service requesting its VIP all the time
(builder.labclient), and the long download held across a failover. Pure functions over the
clients' logs, plus the download's start and end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import Cluster, Protocol, Scheduler, VirtualService

STEADY = 5                  # consecutive good answers that count as "served again"
# The download held across a director failover: seq's lines (deterministic, so any byte lost,
# doubled or reordered changes the checksum), read at a rate that makes it last ~45 s.
TRANSFER_PATH = "/lvs-lab-transfer.txt"
TRANSFER_LINES = 1_000_000
TRANSFER_RATE = 150_000     # bytes a second
TRANSFER_TIMEOUT = 120      # seconds without a byte before the client gives up
FALLBACK_MARKER = "Service degraded"
CYCLES = 4  # a scheduler's spread is judged over this many of its cycles
# One client always lands on one real server with these (hashing, locality, failover,
# overflow): a single client proves no spread, only that a listed server answers.
HASHING = {Scheduler.SH, Scheduler.DH, Scheduler.MH, Scheduler.LBLC, Scheduler.LBLCR, Scheduler.FO, Scheduler.OVF}


@dataclass(frozen=True)
class Answer:
    t0: float
    t1: float
    ok: bool
    who: str | None
    error: str | None


@dataclass(frozen=True)
class Service:
    """A virtual service the lab requests: its VIP:port, which real servers it lists (with
    their weights), and whether its fallback answers when none does."""
    index: int
    vs: VirtualService
    weights: dict[str, int]     # real server name -> weight in the spec
    fallback: bool

    @property
    def label(self) -> str:
        return f"{self.vs.address}:{self.vs.port or 80}"

    @property
    def log_name(self) -> str:
        return "client.jsonl" if self.index == 0 else f"client-{self.index}.jsonl"


def services(cluster: Cluster) -> list[Service]:
    """The virtual services a client can request: TCP with an address and port (HTTP)."""
    out = []
    for i, vs in enumerate(cluster.virtual_services):
        if vs.protocol is not Protocol.TCP or vs.fwmark is not None:
            continue
        out.append(Service(i, vs, {n.name: w for n, _, w in cluster.reals_of(vs)}, vs.fallback is not None))
    return out


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


def sample_size(weights: dict[str, int], scheduler: Scheduler) -> int:
    """How many answers in a row show a scheduler's spread: four of its cycles."""
    live = {k: w for k, w in weights.items() if w > 0}
    if scheduler in HASHING or not live:
        return 4
    if scheduler is Scheduler.RR:
        return CYCLES * len(live)
    g = math.gcd(*live.values())
    return CYCLES * sum(w // g for w in live.values())


def fits_scheduler(answers: list[Answer], weights: dict[str, int], scheduler: Scheduler) -> bool:
    """Do these consecutive answers show the scheduler spreading one client's new connections
    over the real servers as their weights say? rr: each the same share; the weighted and
    least-connection schedulers: shares in proportion to the weights (wrr 3:2:1 gives 12:8:4
    over four cycles), each within one answer of its share (threads of one client may reach
    the director a little out of order under emulation); the hashing and failover ones (sh, dh,
    mh, lblc, lblcr, fo, ovf): one client always lands on the same listed server."""
    live = {k: w for k, w in weights.items() if w > 0}
    n = sample_size(weights, scheduler)
    if len(answers) < n or not live or not all(a.ok for a in answers[:n]):
        return False
    counts = Counter(a.who for a in answers[:n])
    if scheduler in HASHING:
        return len(counts) == 1 and next(iter(counts)) in live
    if set(counts) != set(live):
        return False
    share = {k: 1 for k in live} if scheduler is Scheduler.RR else live
    total = sum(share.values())
    return all(abs(counts[k] - n * share[k] / total) <= 1 for k in live)


def transfer_content() -> bytes:
    """What `seq 1 TRANSFER_LINES` writes: the file the real servers serve for the download."""
    return "".join(f"{i}\n" for i in range(1, TRANSFER_LINES + 1)).encode()


def transfer_expected() -> tuple[int, str]:
    content = transfer_content()
    return len(content), hashlib.sha256(content).hexdigest()


def transfer_problems(done: dict[str, Any] | None, size: int, sha256: str, synced_to: str | None,
                      t_fail: float) -> list[str]:
    """What was wrong with the download across the failover (nothing: it ended whole, after the
    failure, and its connection had reached the standby's IPVS table before it)."""
    problems = []
    if synced_to is None:
        problems.append("the download's connection never reached the standby's IPVS table (sync daemon)")
    if done is None:
        problems.append("the download did not end")
    elif not done["ok"] or done["bytes"] != size or done["sha256"] != sha256:
        problems.append(f"the download broke: {done['bytes']} of {size} bytes"
                        + (f", {done['error']}" if done.get("error") else "")
                        + ("" if done["sha256"] == sha256 else ", checksum differs"))
    elif done["t1"] <= t_fail:
        problems.append("the download ended before the failure: it proves nothing (raise its size)")
    return problems
