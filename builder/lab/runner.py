"""The lab from start to end: boot, the tutorial's checks, the chosen scenarios (each from a
healthy cluster, the cluster whole again before the next), the late-heartbeat audit, the
rolling upgrade and the key rotation if asked, then the upgraded cluster's scenarios; always
torn down, always a report."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import BuilderError
from ..firmware import VmFirmware
from ..model import Cluster, Role
from ..run import require
from . import checks, rotation, upgrade
from .cluster import Lab, LabNode
from .faults import TIMED
from .plan import Scenario
from .report import Report
from .scenario import run_scenario
from .stack import Heartbeat, stack_for


def late_heartbeats(lab: Lab, faulty: list[tuple[float, float]]) -> dict[str, int]:
    """Per director, the longest late heartbeat logged this boot (0 if none): how close the
    lab's load came to a false failover. Heartbeats late because a scenario froze, cut off or
    partitioned a director (`faulty`: windows on the lab's clock) are no such measure."""
    if not isinstance(lab.stack, Heartbeat):
        return {}
    out = {}
    for d in lab.directors:
        r = lab.sh(d, lab.stack.late_heartbeat_command, timeout=60)
        offset = lab.clock_offset(d)
        if r is None or offset is None:
            continue
        out[d.name] = max((ms for uptime, ms in lab.stack.late_heartbeats(r.stdout)
                           if not any(a <= uptime + offset <= b for a, b in faulty)), default=0)
    return out


def run_scenarios(lab: Lab, scenarios: list[Scenario], report: Report, active: LabNode,
                  faulty: list[tuple[float, float]]) -> LabNode | None:
    """Each scenario from a healthy cluster to a healthy one; the director holding the VIPs at
    the end, or None (report.error says why) if one left the cluster unhealthy."""
    for sc in scenarios:
        row, holder = run_scenario(lab, sc, active)
        report.rows.append(row)
        if any(kind in TIMED for kind, _ in sc.faults) and row.at_s is not None:
            t = lab.start + row.at_s
            faulty.append((t, t + (row.seconds or 0) + 10))
        lab.progress(f"scenario {sc.key}: {'pass' if row.ok else 'FAIL'} ({row.detail})")
        if holder is None:
            report.error = f"scenario {sc.key} left the cluster unhealthy; the remaining scenarios did not run"
            return None
        active = holder
    return active


def run(lab: Lab, scenarios: list[Scenario], report: Report, rollout: upgrade.Rollout | None = None) -> None:
    report.boot_s = lab.boot()
    active = checks.functional_checks(lab, report)
    if active is None:
        return
    lab.progress(f"healthy: {active.name} holds the VIPs; functional checks "
                 + ("passed" if all(r.ok for r in report.rows) else "FAILED"))
    faulty: list[tuple[float, float]] = []
    active = run_scenarios(lab, scenarios, report, active, faulty)
    if active is None:
        return
    report.late_heartbeat_ms = late_heartbeats(lab, faulty)  # before the upgrade restarts heartbeat
    if rollout is None:
        return
    if rollout.repo is not None and rollout.new is not None:
        upgrade.upgrade(lab, report, rollout.repo, rollout.new, active)
    holder = checks.vip_holder(lab)
    if rollout.rotation and report.error is None and holder is not None:
        rotation.rotate(lab, report, list(rollout.rotation), holder)
    holder = checks.vip_holder(lab)
    if rollout.then and report.error is None and holder is not None and rollout.new is not None:
        # the upgraded cluster's scenarios: its rows keyed SCENARIO@VERSION
        lab.cluster = rollout.new
        tag = rollout.new.package.version
        run_scenarios(lab, [dataclasses.replace(sc, key=f"{sc.key}@{tag}") for sc in rollout.then], report,
                      holder, [])


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
            peer: bool = False, rollout: upgrade.Rollout | None = None, firmware: VmFirmware | None = None) -> Report:
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"), ("ip", "iproute2"),
                      ("bridge", "iproute2")):
        require(tool, pkg)
    for role, image in images.items():
        if not image.exists():
            raise BuilderError(f"{image}: no {role.value} image (build-image {role.value})")
    stack = stack_for(peer)
    report = Report(cluster.name, cluster.release.value, boot="pxe" if pxe_tree is not None else "disk",
                    directors=stack.label,
                    firmware=firmware.value if firmware else "bios" if pxe_tree is not None else "direct")
    start = time.monotonic()
    later = (rollout.new,) if rollout is not None and rollout.new is not None else ()
    with interrupts_as_errors(), Lab(cluster, images, workdir, stack, progress, pxe_tree, later,
                                       firmware) as lab:
        report.vips = [s.label for s in lab.services]
        try:
            run(lab, scenarios, report, rollout)
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
