"""The tutorial's functional checks, and convergence: the cluster is whole when one director
holds every VIP, its IPVS table sends to every real server each service lists, both directors
pass the stack's checks in their roles, and every VIP's client is answered as its scheduler
spreads connections over the real servers."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .machines import Machines, Node
from .report import Report, Row
from .stack import CHECK_GROUPS, DEGRADED_GROUPS
from .traffic import Answer, fits_scheduler, sample_size

CONVERGE_TIMEOUT = 420    # -> both directors pass their checks and every client is served
# ... and still do this long later, with neither director's stack restarted meanwhile: heartbeat
# restarts itself ~10 s after a healed partition (the full tier's hang row looked converged just
# before loadb2's did, and the partition row then began inside its new instance's initdead).
SETTLE = 20
# Where no director's stack was touched (a real server's fault, an upgrade of the real servers,
# a key reread) there is no restart to wait out: the healthy state need only hold this long.
SETTLE_QUIET = 10


def real_address(m: Machines, name: str) -> str:
    return str(next(n.node.address for n in m.reals if n.name == name))


def idle_reals(m: Machines, table: dict[str, Any] | None) -> list[str]:
    """`service: real` for each real server a service lists that this IPVS table does not send
    to (absent, or weight 0)."""
    out = []
    for svc in m.services:
        listed = (table or {}).get(f"TCP  {svc.label}", {"reals": {}})["reals"]
        for name, weight in svc.weights.items():
            if weight == 0:
                continue
            address = real_address(m, name)
            if not any(k.split(":")[0] == address and r["weight"] > 0 for k, r in listed.items()):
                out.append(f"{svc.label}: {name}")
    return out


def out_of_every_service(m: Machines, table: dict[str, Any] | None, real: str) -> bool:
    """Is this real server out (absent, or weight 0) of every virtual service listing it?"""
    if table is None:
        return False
    address = real_address(m, real)
    for svc in m.services:
        if real not in svc.weights:
            continue
        listed = table.get(f"TCP  {svc.label}")
        if listed is None:
            return False  # no table for the service yet: nothing to judge by
        if any(k.split(":")[0] == address and r["weight"] > 0 for k, r in listed["reals"].items()):
            return False
    return True


def checks_of(m: Machines, directors: list[Node], holder: Node | None) -> dict[str, dict[str, Any] | None]:
    """The stack's checks on several directors at once (each VM's agent has its own lock)."""
    def one(d: Node) -> dict[str, Any] | None:
        return m.check(d, "active" if d is holder else "standby")
    with ThreadPoolExecutor(len(directors)) as pool:
        return dict(zip([d.name for d in directors], pool.map(one, directors), strict=True))


def client_samples(m: Machines, since: float, deadline: float) -> dict[str, list[Answer]]:
    """Per service, the answers its client got from `since` on: as many as its scheduler's
    spread needs, or fewer if one failed or 30 s passed."""
    want = {s.label: sample_size(s.weights, s.vs.scheduler) for s in m.services}
    got: dict[str, list[Answer]] = {}
    while True:
        got = {s.label: m.answers(s, since)[: want[s.label]] for s in m.services}
        if all(len(got[k]) >= want[k] or any(not a.ok for a in got[k]) for k in want):
            return got
        if m.now() >= min(deadline, since + 30):
            return got
        m.sleep(1.0)


def spread_ok(m: Machines, samples: dict[str, list[Answer]]) -> tuple[bool, str]:
    bad = [s for s in m.services if not fits_scheduler(samples.get(s.label, []), s.weights, s.vs.scheduler)]
    text = "; ".join(f"{s.label}: " + " ".join(a.who or a.error or "?" for a in samples.get(s.label, []))
                     for s in (bad or m.services))
    return not bad, text


def holders_of(held: dict[str, frozenset[str] | None]) -> list[str]:
    return [name for name, vips in held.items() if vips]


Excuse = Callable[[str, dict[str, Any]], bool]


def converge(m: Machines, expect_active: Node | None, timeout: float = CONVERGE_TIMEOUT, settle: float = SETTLE,
             excused: Excuse | None = None,
             ) -> tuple[bool, dict[str, dict[str, Any] | None], dict[str, list[Answer]], str]:
    """Wait until one director holds every VIP (the expected one, if given), its table sends
    to every listed real server, both directors pass their checks, and every client is served
    as its scheduler says. `excused(director, row)`: a failing check row this state is known to
    have (a rolling upgrade's half-way point), not counted against it."""
    deadline = m.now() + timeout
    checks: dict[str, dict[str, Any] | None] = {}
    why = "not checked"
    said, said_at = "", 0.0
    settled: tuple[float, dict[str, str | None]] | None = None  # since when healthy, and as which instances
    while True:
        # A guest whose kernel panicked answers nothing again: say so now, not after the timeout.
        if dead := {n.name: p for n in m.nodes if (p := m.panicked(n)) is not None}:
            return False, checks, {}, "the guest kernel panicked on " + "; ".join(
                f"{k} ({v}; see its console)" for k, v in dead.items())
        m.wait_agents(deadline)
        # Cheap first (lvs-cluster-check costs seconds under emulation). The clients' answers
        # are judged from here on: while the checks ran, the state they pass was already there.
        since = m.now()
        held = m.held_all()
        holders = holders_of(held)
        holder = next((d for d in m.directors if holders == [d.name]), None)
        checks = {}
        if holder is None or held[holder.name] != frozenset(m.vips) or (
                expect_active is not None and holder is not expect_active):
            why = "VIPs on " + (", ".join(f"{k} ({' '.join(sorted(held[k] or ()))})" for k in holders)
                                or "no director")
        elif idle := idle_reals(m, m.ipvs(holder)):
            why = f"{holder.name}: ipvsadm does not send to " + ", ".join(idle)
        else:
            checks = checks_of(m, m.directors, holder)
        roles = {name: (c or {}).get("role") for name, c in checks.items()}
        failing = [f"{name}: {row['check']}: {row['observed']}" for name, c in checks.items() if c
                   for row in c["checks"] if not row["ok"] and not (excused and excused(name, row))]
        if not checks:
            pass
        elif any(c is None for c in checks.values()):
            why = "lvs-cluster-check gave no answer on " + ", ".join(k for k, c in checks.items() if c is None)
        elif sorted(str(v) for v in roles.values()) != ["active", "standby"]:
            why = "roles " + ", ".join(f"{k} {v}" for k, v in roles.items())
        elif failing:
            why = failing[0]
        else:
            samples = client_samples(m, since, deadline)
            ok, text = spread_ok(m, samples)
            if ok:
                instances = {d.name: m.instance(d) for d in m.directors}
                if settled is not None and settled[1] == instances and m.now() - settled[0] >= settle:
                    return True, checks, samples, ""
                if settled is None or settled[1] != instances:
                    settled = (since, instances)
                why = (f"healthy; settling for {settle:g} s ("
                       + ", ".join(f"{k} {v}" for k, v in instances.items()) + ")")
                if m.now() >= deadline:
                    return False, checks, {}, why
                m.sleep(1.0)
                continue
            why = "client answers: " + text
        settled = None
        if m.now() >= deadline:
            return False, checks, {}, why
        if why != said or m.now() - said_at >= 20:
            said, said_at = why, m.now()
            m.progress(f"waiting for the cluster: {why}")
        m.sleep(1.0)


def vip_holder(m: Machines) -> Node | None:
    """The one director that holds every VIP, if exactly one holds any."""
    held = m.held_all()
    holders = holders_of(held)
    if len(holders) != 1 or held[holders[0]] != frozenset(m.vips):
        return None
    return next(d for d in m.directors if d.name == holders[0])


def functional_checks(m: Machines, report: Report) -> Node | None:
    """Rows a-f: the tutorial's checks on both directors, and every client served in turn.
    Returns the active director, or None if the cluster did not become healthy."""
    ok, checks, samples, why = converge(m, None)
    if ok:
        report.healthy_s = m.since_start()
    firsts = [next((a.t1 for a in m.answers(s) if a.ok), None) for s in m.services]
    if firsts and None not in firsts:  # every VIP answered
        report.serving_s = max(t for t in firsts if t is not None) - (m.now() - m.since_start())
    if not m.stack.has_checks:  # keepalived's directors: no lvs-cluster-check, the VIP's place is their check
        holder = vip_holder(m)
        report.rows.append(Row("check", "a", "one director (keepalived's VRRP master) holds every VIP",
                               ok and holder is not None, holder.name if holder else why))
    else:
        for key, title, groups in CHECK_GROUPS:
            rows_ok = len(checks) == len(m.directors)
            details = [] if rows_ok else ["not checked: " + why]
            for name, c in checks.items():
                if c is None:
                    rows_ok = False
                    details.append(f"{name}: no answer")
                    continue
                mine = [r for r in c["checks"] if r.get("group") in groups]
                rows_ok = rows_ok and bool(mine) and all(r["ok"] for r in mine)
                shown = [r for r in mine if not r["ok"]] or mine
                details.append(f"{name} ({c['role']}): " + "; ".join(
                    r["observed"] if r["ok"] else f"{r['check']}: {r['observed']} (expected {r['expected']})"
                    for r in shown[:4]))
            report.rows.append(Row("check", key, title, rows_ok, " · ".join(details)))
    spread, text = spread_ok(m, samples) if samples else (False, why)
    report.rows.append(Row("check", "f", "requests to every VIP are answered by its real servers as its "
                                         "scheduler spreads them", spread, text))
    if not ok:
        report.error = f"the cluster did not become healthy within {CONVERGE_TIMEOUT} s: {why}"
        return None
    return vip_holder(m)


# The survivor's takeover completes: the VIPs move first (lvs-director's harc), the sync daemon's
# master role when heartbeat has taken the group, which after a clean stop waits for the other
# director's release, shutdown notice and death: 25-70 s in the lab (70 s with both real
# servers booting beside it, under emulation).
DEGRADED_TIMEOUT = 120


def degraded_state(m: Machines, survivor: Node, standby: Node | None, failed_reals: list[Node]) -> list[str]:
    """Wait until the stack's checks say the directors reached the degraded state: the survivor
    serves, without the failed real servers, with the fallback where none is left; a standby
    that saw no director fail stays a standby. What is still wrong after DEGRADED_TIMEOUT."""
    deadline = m.now() + DEGRADED_TIMEOUT
    while True:
        problems = degraded_problems(m, survivor, standby, failed_reals)
        if not problems or m.now() >= deadline:
            return problems
        m.sleep(2.0)


def no_answer(m: Machines, n: Node) -> str:
    p = m.panicked(n)
    return f"lvs-cluster-check gave no answer on {n.name}" + (f" (its kernel panicked: {p})" if p else "")


def degraded_problems(m: Machines, survivor: Node, standby: Node | None, failed_reals: list[Node]) -> list[str]:
    if not m.stack.has_checks:  # keepalived: no lvs-cluster-check; the survivor's table must skip the failed
        idle = idle_reals(m, m.ipvs(survivor))
        return [f"{survivor.name}: ipvsadm still sends to {n.name}" for n in failed_reals
                if not any(i.endswith(f": {n.name}") for i in idle)]
    problems = []
    both = checks_of(m, [survivor] + ([standby] if standby else []), survivor)
    c = both[survivor.name]
    if c is None:
        return [no_answer(m, survivor)]
    if c["role"] != "active":
        problems.append(f"{survivor.name} is {c['role']}, not active")
    problems += [f"{survivor.name}: {r['check']}: {r['observed']} (expected {r['expected']})"
                 for r in c["checks"] if r.get("group") in DEGRADED_GROUPS and not r["ok"]]
    failed = {str(n.node.address) for n in failed_reals}
    for svc in m.services:
        listed = c["ipvs"].get(f"TCP  {svc.label}", {"reals": {}})["reals"]
        serving = False
        for address, real in listed.items():
            host = address.split(":")[0]
            if host in failed and real["weight"] > 0:
                problems.append(f"{survivor.name}: ipvsadm still sends to {address} ({svc.label})")
            if host not in failed and host != "127.0.0.1":
                serving = serving or real["weight"] > 0
        alive = [n for n in svc.weights if real_address(m, n) not in failed]
        if alive and not serving:
            problems.append(f"{survivor.name}: no surviving real server of {svc.label} has weight")
    if standby is not None:  # no director failed: the standby stays a standby
        s = both[standby.name]
        if s is None:
            problems.append(no_answer(m, standby))
        else:
            problems += [f"{standby.name}: {r['check']}: {r['observed']}" for r in s["checks"]
                         if not r["ok"] and not str(r.get("group", "")).startswith("ipvs")]
    return problems
