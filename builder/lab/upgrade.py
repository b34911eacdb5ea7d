"""lab --upgrade: the documented rolling upgrade (README: upgrades) to the spec's next version,
published in a repository served in the lab's namespace, with the clients requesting every VIP
throughout. One report row per step."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..authkey import RotateStep
from ..errors import BuilderError
from ..model import Cluster
from ..render import sources_name
from ..repo import READY as REPO_READY
from ..repo import REPO_PORT
from . import checks
from .cluster import Lab, LabNode
from .plan import Scenario
from .report import Report, Row

# apt on the nodes reads only the lab's repository (they have no route to any other), and
# keeps an admin's edited conffile as dpkg would ask an admin to (the new one beside it as
# .dpkg-dist).
MAINTENANCE_DIR = "/var/lib/lvs-director/maintenance"   # ldirectord's maintenancedir
UPGRADE_STEP_TIMEOUT = 300
NO_ANSWER = "no answer from its guest agent"
POLL = 1.0


@dataclass(frozen=True)
class Rollout:
    """What the lab rolls out after its scenarios: `--upgrade`, the repository with the next
    version and that version's cluster; `--rotate-key`, the lvs-cluster-key packages of a key
    rotation (one per step), after the upgrade if both; `then`, the scenarios the upgraded
    cluster is put through after both (with `--upgrade-to`: a second heartbeat path proven
    where it was rolled out)."""
    repo: Path | None = None
    new: Cluster | None = None
    rotation: tuple[tuple[RotateStep, Path], ...] = ()
    then: tuple[Scenario, ...] = ()


def apt_only(sources: str) -> str:
    return (f"-o Dir::Etc::SourceList=/etc/apt/sources.list.d/{sources} -o Dir::Etc::SourceParts=- "
            "-o APT::Get::List-Cleanup=0")


def start_repo_server(lab: Lab, repo: Path) -> None:
    """`lvs-builder repo serve` on the client's address in the namespace, as a small site runs it."""
    logfile = lab.workdir / "repo-serve.log"
    proc = lab.spawn(lab.netns.argv([sys.executable, "-m", "builder", "repo", "serve", "--dir",
                                     str(repo.resolve()), "--address", str(lab.netns.host.ip),
                                     "--port", str(REPO_PORT)]), logfile.name)
    lab.wait_ready(proc, logfile, REPO_READY, "repo serve")
    lab.progress(f"repo serve: {repo} at http://{lab.netns.host.ip}:{REPO_PORT}/")


def step(lab: Lab, report: Report, key: str, title: str, body: Callable[[], list[str]],
         expect_active: LabNode | None, settle: float = checks.SETTLE, excused: checks.Excuse | None = None) -> bool:
    """One step of the rolling upgrade: run it, wait for the cluster to be healthy again,
    count the clients' failed requests from its start to then."""
    lab.progress(f"upgrade {key}: {title}")
    t = lab.now()
    try:
        problems = body()
    except BuilderError as e:
        problems = [str(e)]
    lab.progress(f"upgrade {key}: done after {lab.now() - t:.0f} s; waiting for the cluster to converge")
    ok, _, _, why = checks.converge(lab, expect_active, settle=settle, excused=excused)
    if not ok:
        problems.append(f"did not converge again within {checks.CONVERGE_TIMEOUT} s: {why}")
    window = [a for s in lab.services for a in lab.answers(s, t) if a.t0 < lab.now()]
    holder = checks.vip_holder(lab)
    slowest = max((a.t1 - a.t0 for a in window if a.ok), default=0.0)
    row = Row("upgrade", key, title, not problems,
              "; ".join(problems) or f"done; longest wait for an answer {slowest:.1f} s",
              sent=len(window), failed=sum(not a.ok for a in window),
              vip_at_end=holder.name if holder else None, seconds=lab.now() - t)
    report.rows.append(row)
    lab.progress(f"upgrade {key}: {'pass' if row.ok else 'FAIL'} ({row.seconds:.0f} s, "
                 f"{row.failed} of {row.sent} requests failed; {row.detail})")
    return ok


def install_with(lab: Lab, n: LabNode, command: str, what: str, pkg: str, version: str) -> list[str]:
    """Run an install `command` on a node (its output appended to the workdir's
    install-NODE.log): it must succeed and leave `pkg` at `version`."""
    r = lab.sh(n, f"{command} 2>&1; echo \"exit $?\"; dpkg-query -W -f '${{Version}}\\n' {pkg}",
               timeout=UPGRADE_STEP_TIMEOUT)
    if r is None:
        return [f"{n.name}: {NO_ANSWER}"]
    log = lab.workdir / f"install-{n.name}.log"
    with log.open("a") as f:
        f.write(r.stdout + r.stderr)
    lines = r.stdout.strip().splitlines()
    if "exit 0" not in lines[-2:-1]:
        return [f"{n.name}: {what} failed (see {log})"]
    if lines[-1] != version:
        return [f"{n.name}: {pkg} is at {lines[-1]} after {what}, not {version}"]
    return []


def apt_install(lab: Lab, n: LabNode, sources: str, version: str) -> list[str]:
    """apt-get install the node's role package from the repository."""
    pkg = n.role.package
    return install_with(lab, n, "DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confdef "
                                f"-o Dpkg::Options::=--force-confold {apt_only(sources)} install {pkg}",
                        f"apt-get install {pkg}", pkg, version)


def maintenance(lab: Lab, real: LabNode, on: bool) -> list[str]:
    """Put a real server into ldirectord's maintenance on both directors (or take it out)
    and wait until both IPVS tables say so (weight 0, or weighted again)."""
    action = "touch" if on else "rm -f"
    for d in lab.directors:
        r = lab.sh(d, f"{action} {MAINTENANCE_DIR}/{real.node.address}")
        if r is None or r.exitcode != 0:
            return [f"{d.name}: {action} {MAINTENANCE_DIR}/{real.node.address} failed"]
    deadline = lab.now() + 120
    waiting = list(lab.directors)
    while waiting and lab.now() < deadline:
        waiting = [d for d in waiting if checks.out_of_every_service(lab, lab.ipvs(d), real.name) != on]
        if waiting:
            lab.sleep(POLL)
    return [f"{d.name}: ipvsadm still {'sends to' if on else 'does not send to'} {real.name} "
            "after 120 s" for d in waiting]


def takeover(lab: Lab, standby: LabNode) -> list[str]:
    r = lab.sh(standby, "lvs-takeover", timeout=60)
    if r is None or r.exitcode != 0:
        why = (r.stdout + r.stderr).strip() if r is not None else "no answer"
        return [f"{standby.name}: lvs-takeover failed: {why}"]
    return []


def upgraded(lab: Lab, new: Cluster) -> Row:
    """Every node runs the new version, and both directors' heartbeat the new ha.cf."""
    version = new.package.version
    warntime = f"{new.heartbeat.timing.warntime:g}"
    problems = []
    for n in lab.nodes:
        r = lab.sh(n, f"dpkg-query -W -f '${{Version}}' {n.role.package}")
        if r is None or r.stdout.strip() != version:
            problems.append(f"{n.name}: {n.role.package} {r.stdout.strip() if r else '?'}")
    for d in lab.directors:
        r = lab.sh(d, "cl_status hbparameter -p warntime")
        live = r.stdout.strip() if r is not None else "?"
        if live not in (warntime, f"{new.heartbeat.timing.warntime * 1000:g}ms", f"{warntime}s"):
            problems.append(f"{d.name}: heartbeat runs warntime {live}, not {warntime}")
        # The package's upgrade reloads ldirectord (its unit's ExecReload: SIGHUP); ldirectord
        # says so when it rereads ldirectord.cf.
        r = lab.sh(d, "journalctl -b -q -o cat -u ldirectord.service | grep -c 'config on signal' || true")
        if r is None or not r.stdout.strip().isdigit() or int(r.stdout.strip()) == 0:
            problems.append(f"{d.name}: ldirectord did not reread its configuration on the upgrade's reload")
    # lab.cluster is still the booted one here
    links = heartbeat_links(lab, new, problems) if new.heartbeat_paths != lab.cluster.heartbeat_paths else ""
    return Row("upgrade", "u-end", f"every node at {version}; heartbeat on both directors runs the new ha.cf "
                                   f"(warntime {warntime}); ldirectord reloaded", not problems,
               "; ".join(problems) or f"{len(lab.nodes)} nodes at {version}; warntime {warntime} and "
                                      f"ldirectord reloaded on both{links}")


def heartbeat_links(lab: Lab, new: Cluster, problems: list[str]) -> str:
    """An upgrade that adds a heartbeat path (a serial cable, another NIC): lvs-cluster-check's
    row "heartbeat's links to PEER" (heartbeat's own word) on each director, that it hears the
    other on every link of the new ha.cf, told in ha.cf's order (heartbeat lists them in the
    order it first heard them)."""
    links = new.heartbeat_link_names
    said = []
    for name, c in checks.checks_of(lab, lab.directors, checks.vip_holder(lab)).items():
        peer = next(d.name for d in lab.directors if d.name != name)
        row = next((r for r in (c or {}).get("checks", []) if r["check"] == f"heartbeat's links to {peer}"), None)
        heard = links_heard(row)
        said.append(f"{name} hears {peer} on " + ", ".join(f"{k} {heard.get(k, 'not at all')}" for k in links))
        if any(heard.get(k) != "up" for k in links):
            problems.append(said[-1])
    return "; " + "; ".join(said)


def links_heard(row: dict[str, Any] | None) -> dict[str, str]:
    """lvs-cluster-check's row "heartbeat's links to PEER" ("/dev/ttyS1 dead, eth0 up"): each
    link's state."""
    observed = row["observed"] if row else ""
    return dict(part.rsplit(" ", 1) for part in observed.split(", ") if " " in part)


def half_way(old: Cluster, new: Cluster) -> checks.Excuse | None:
    """While one director runs the new ha.cf and the other the old one, the links only the
    new one has are dead on the upgraded director: the other does not send on them yet. That
    row, and only for those links, is not held against the half-way cluster."""
    added = set(new.heartbeat_link_names) - set(old.heartbeat_link_names)
    if not added:
        return None

    def excused(_director: str, row: dict[str, Any]) -> bool:
        if not row["check"].startswith("heartbeat's links to "):
            return False
        heard = links_heard(row)
        return bool(heard) and all(state == "up" or link in added for link, state in heard.items())
    return excused


def upgrade(lab: Lab, report: Report, repo: Path, new: Cluster, active: LabNode) -> None:
    """Every node reads the repository; the standby director upgrades (its heartbeat restarts
    with the new configuration) and takes over (lvs-takeover), the former active upgrades;
    then each real server, one at a time, in ldirectord's maintenance on both directors
    (weight 0) while it upgrades."""
    version = new.package.version
    sources = sources_name(lab.cluster)
    entry = (repo / sources).read_text()
    start_repo_server(lab, repo)

    def publish() -> list[str]:
        def one(n: LabNode) -> list[str]:
            r = lab.sh(n, f"cat > /etc/apt/sources.list.d/{sources} <<'LVS_EOF'\n{entry}LVS_EOF\n"
                          f"apt-get {apt_only(sources)} update 2>&1 && apt-cache policy {n.role.package}",
                       timeout=UPGRADE_STEP_TIMEOUT)
            if r is None or r.exitcode != 0:
                return [f"{n.name}: apt-get update from the repository failed: "
                        + (r.stdout.strip().splitlines()[-1] if r and r.stdout.strip() else "no answer")]
            if f"Candidate: {version}" not in r.stdout:
                return [f"{n.name}: apt does not offer {n.role.package} {version}"]
            return []
        with ThreadPoolExecutor(len(lab.nodes)) as pool:
            return [p for ps in pool.map(one, lab.nodes) for p in ps]

    standby = next(d for d in lab.directors if d is not active)
    # An upgrade that brings the first ping nodes: the standby, upgraded first, reaches one that
    # the active, with none yet, does not, and ipfail there gives the group up to it (LVSVip's
    # stop: make-before-break). The handover is then done already.
    by_ipfail = (new.heartbeat.ipfail is not None and bool(new.heartbeat.ping_nodes)
                 and not lab.cluster.heartbeat.ping_nodes)
    # The directors' steps restart heartbeat (u1, u3) or move the VIPs: the full settle. The
    # others touch no director's stack.
    quiet, full = checks.SETTLE_QUIET, checks.SETTLE
    added = [k for k in new.heartbeat_link_names if k not in lab.cluster.heartbeat_link_names]
    mixed = half_way(lab.cluster, new)
    steps: list[tuple[str, str, Callable[[], list[str]], LabNode, float, checks.Excuse | None]] = [
        ("u0", f"publish {version}: its sources entry on every node (Signed-By), apt-get update",
         publish, active, quiet, None),
        ("u1", f"{standby.name} (standby): apt-get install lvs-director {version}; "
               "its heartbeat restarts with the new ha.cf"
               + (f"; it reaches the new ping nodes, {active.name} none: ipfail there hands it the VIPs"
                  if by_ipfail else "")
               + (f"; its new links ({', '.join(added)}) stay dead until {active.name} runs the new ha.cf"
                  if added else ""),
         lambda: apt_install(lab, standby, sources, version), standby if by_ipfail else active, full, mixed),
        ("u2", f"handover: done at u1 (ipfail); {standby.name} holds the VIPs" if by_ipfail else
               f"handover: lvs-takeover on {standby.name} (VIP claimed there, then hb_takeover; "
               f"{active.name} releases)",
         (lambda: []) if by_ipfail else lambda: takeover(lab, standby), standby, full, mixed),
        ("u3", f"{active.name} (now standby): apt-get install lvs-director {version}",
         lambda: apt_install(lab, active, sources, version), standby, full, None),
    ]

    def real_step(real: LabNode) -> list[str]:
        done = maintenance(lab, real, True) or apt_install(lab, real, sources, version)
        return done + maintenance(lab, real, False)

    for i, real in enumerate(lab.reals):
        steps.append((f"u{4 + i}", f"{real.name}: maintenance on both directors (weight 0), "
                                   f"apt-get install lvs-realserver {version}, back in service",
                      functools.partial(real_step, real), standby, quiet, None))
    for key, title, body, expect, settle, excused in steps:
        if not step(lab, report, key, title, body, expect, settle, excused):
            report.error = f"upgrade step {key} left the cluster unhealthy; the remaining steps did not run"
            return
    report.rows.append(upgraded(lab, new))
