"""lab --rotate-key, after the scenarios (and the upgrade, with --upgrade): the documented key
rotation (README, 'The cluster key'), one lvs-cluster-key version per step installed on both
directors out of band (copied through the guest agent, as an admin would scp it; never through
the repository), the clients requesting every VIP throughout. One report row per step, and one
for the end: both directors on the new key alone, heartbeat never restarted and each seeing
the other."""

from __future__ import annotations

import functools
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..authkey import RotateStep
from ..deb import KEY_RECORD
from ..model import Extra
from . import checks, upgrade
from .cluster import Lab, LabNode
from .report import Report, Row

PACKAGE = Extra.CLUSTER_KEY.package
# heartbeat's SIGHUP reread logs this line (heartbeat.c, hb_signal_reread_config_action).
REREAD = "Rereading authentication file"
TITLES = {
    RotateStep.ADD: "heartbeat rereads authkeys: a new key beside the old one, which still signs",
    RotateStep.SIGN: "the new key signs: lvs-cluster-key-switch on both directors at once",
    RotateStep.DROP: "heartbeat rereads authkeys: the old key dropped",
}
# Upstream waits 500 heartbeat intervals between `sign` and `drop`, so that no retransmission
# of a message signed with the old key is asked for after it is gone. On the lab's lossless
# bridge none is; the lab waits a little, and the README says what a site waits.
SETTLE_S = 10.0
REREAD_TIMEOUT = 20.0


def rereads(lab: Lab, d: LabNode) -> int | None:
    """How often heartbeat on `d` has reread authkeys this boot (its log's lines)."""
    r = lab.sh(d, f"journalctl -b -q -o cat | grep -c '{REREAD}' || true")
    out = r.stdout.strip() if r is not None else ""
    return int(out) if out.isdigit() else None


def install(lab: Lab, d: LabNode, deb: Path, reread: bool = True) -> list[str]:
    """dpkg -i the package on a director, copied in through its guest agent's file calls (never
    a command line; into root's home, removed after). With `reread`, its postinst has
    heartbeat reread authkeys, which heartbeat's log must say within REREAD_TIMEOUT."""
    before = rereads(lab, d)
    target = f"/root/{deb.name}"  # root's home: its owner's only
    if not lab.put(d, target, deb.read_bytes()):
        return [f"{d.name}: copying {deb.name} in through its guest agent failed"]
    # Under a lock: if the agent's answer to the first try is lost, the second waits for it
    # and installs the same package again (harmless), instead of failing on dpkg's own lock.
    problems = []
    for _ in range(2):
        problems = upgrade.install_with(lab, d, f"flock /root/.{PACKAGE}.lock dpkg -i {target}",
                                        f"dpkg -i {deb.name}", PACKAGE, deb.name.split("_")[1])
        if problems != [f"{d.name}: {upgrade.NO_ANSWER}"]:
            break
    lab.sh(d, f"rm -f {target}")
    return problems or (wait_reread(lab, d, before, f"dpkg -i {deb.name}") if reread else [])


def wait_reread(lab: Lab, d: LabNode, before: int | None, after: str) -> list[str]:
    """heartbeat's log on `d` says one more reread than `before`, within REREAD_TIMEOUT; else
    the problem, with heartbeat's processes and log in the workdir."""
    deadline = lab.now() + REREAD_TIMEOUT
    while before is not None:
        now = rereads(lab, d)
        if now is not None and now > before:
            return []
        if lab.now() > deadline:
            break
        lab.sleep(1)
    r = lab.sh(d, "systemctl show -p MainPID -p ExecMainStartTimestamp heartbeat.service; "
                  "ps -o pid,ppid,lstart,args -C heartbeat; stat -c '%n %y %z' /etc/ha.d/ha.cf /etc/ha.d/authkeys; "
                  "journalctl -b -q -n 60 -o short-monotonic -t heartbeat -t ResourceManager -t harc")
    with (lab.workdir / f"rotation-{d.name}.log").open("a") as log:
        log.write(r.stdout + r.stderr if r is not None else "no answer from the guest agent\n")
    return [f"{d.name}: heartbeat did not reread authkeys within {REREAD_TIMEOUT:.0f} s of {after} "
            f"(its log: {lab.workdir}/rotation-{d.name}.log)"]


def switch_together(lab: Lab) -> list[str]:
    """lvs-cluster-key-switch on both directors at the same moment (one thread each), and both
    heartbeats' rereads logged."""
    before = {d.name: rereads(lab, d) for d in lab.directors}

    def one(d: LabNode) -> list[str]:
        r = lab.sh(d, "lvs-cluster-key-switch 2>&1")
        if r is None or r.exitcode != 0:
            return [f"{d.name}: lvs-cluster-key-switch failed: " + ((r.stdout.strip() if r else "") or "no answer")]
        return []
    with ThreadPoolExecutor(len(lab.directors)) as pool:
        problems = [p for ps in pool.map(one, lab.directors) for p in ps]
    return problems or [p for d in lab.directors
                        for p in wait_reread(lab, d, before[d.name], "lvs-cluster-key-switch")]


def on_both(lab: Lab, step: RotateStep, deb: Path, settle: float) -> list[str]:
    """The step's package on each director in turn, the next only if the one before took it;
    at the sign step, then the switch on both together."""
    lab.sleep(settle)
    for d in lab.directors:
        problems = install(lab, d, deb, reread=step is not RotateStep.SIGN)
        if problems:
            return problems
    return switch_together(lab) if step is RotateStep.SIGN else []


def main_pid(lab: Lab, d: LabNode) -> str | None:
    """heartbeat's master process, as heartbeat itself records it (/run/heartbeat.pid): not
    systemd's MainPID, which starts as lvs-director's heartbeat-run wrapper and becomes
    heartbeat's own once systemd rereads the unit's PIDFile= (at a reload: seen as a "restart"
    in CI's rotation, the same heartbeat throughout)."""
    r = lab.sh(d, "cat /run/heartbeat.pid")
    return r.stdout.strip() if r is not None and r.exitcode == 0 else None


def rotated(lab: Lab, last: Path, pids: dict[str, str | None], steps: int, since: float) -> Row:
    """Both directors on the last package's keys alone (its record, and authkeys as it
    shipped), heartbeat's main process the one from before the rotation, its log naming a
    reread per step, and heartbeat's own status: each sees the other active, more than a
    deadtime after the old key went (a peer it could not authenticate would be dead by then)."""
    deadtime = lab.cluster.heartbeat.timing.deadtime
    lab.sleep(max(0.0, since + deadtime + 2 - lab.now()))
    version = last.name.split("_")[1]
    problems = []
    for d in lab.directors:
        peer = next(o for o in lab.directors if o is not d)
        r = lab.sh(d, f"dpkg-query -W -f '${{Version}}\\n' {PACKAGE}; dpkg --verify {PACKAGE} && echo verified; "
                      f"grep -v '^#' /{KEY_RECORD}; "
                      f"echo reread=$(journalctl -b -q -o cat | grep -c '{REREAD}'); "
                      f"echo peer=$(cl_status nodestatus {peer.node.name})")
        if r is None:
            problems.append(f"{d.name}: {upgrade.NO_ANSWER}")
            continue
        out = r.stdout.split()
        if not out or out[0] != version or "verified" not in out:
            problems.append(f"{d.name}: {PACKAGE} {out[0] if out else '?'}, authkeys "
                            + ("as shipped" if "verified" in out else "not as the package shipped it"))
        keys = [ln for ln in r.stdout.splitlines() if re.fullmatch(r"\d+ sha256:[0-9a-f]+", ln.strip())]
        if len(keys) != 1:
            problems.append(f"{d.name}: authkeys lists {len(keys)} keys, not the new one alone")
        reread = next((int(w.split("=")[1]) for w in out if w.startswith("reread=") and w[7:].isdigit()), 0)
        if reread < steps:
            problems.append(f"{d.name}: heartbeat logged {reread} rereads of authkeys, not {steps}")
        if "peer=active" not in out:
            problems.append(f"{d.name}: heartbeat says {peer.node.name} is "
                            f"{next((w[5:] for w in out if w.startswith('peer=')), '?')}, not active")
        if main_pid(lab, d) != pids[d.name]:
            problems.append(f"{d.name}: heartbeat restarted during the rotation (its pid {pids[d.name]} -> "
                            f"{main_pid(lab, d)})")
    return Row("upgrade", "k-end", "both directors on the new key alone; heartbeat never restarted, "
                                   "each sees the other active", not problems,
               "; ".join(problems) or f"{PACKAGE} {version} on both; {steps} rereads of authkeys, "
                                      "no restart; each sees the other active")


def rotate(lab: Lab, report: Report, rotation: list[tuple[RotateStep, Path]], active: LabNode) -> None:
    """Each step on both directors, the cluster healthy and the clients served between."""
    pids = {d.name: main_pid(lab, d) for d in lab.directors}
    for i, (step, deb) in enumerate(rotation):
        version = deb.name.split("_")[1]
        settle = SETTLE_S if step is RotateStep.DROP else 0.0
        title = f"key rotation, {step.value}: {PACKAGE} {version} (dpkg -i, out of band) on both; {TITLES[step]}"
        converged = upgrade.step(lab, report, f"k{i + 1}", title,
                                 functools.partial(on_both, lab, step, deb, settle), active,
                                 checks.SETTLE_QUIET)  # heartbeat rereads authkeys; it does not restart
        if not converged or not report.rows[-1].ok:
            # A step not taken on both directors is no base for the next: it would shut one out.
            report.error = f"key rotation step k{i + 1} failed; the remaining steps did not run"
            return
    report.rows.append(rotated(lab, rotation[-1][1], pids, len(rotation), lab.now()))
