"""One failure scenario, from a healthy cluster to a healthy cluster again: inject its faults,
wait until each is detected and every VIP is served again by the servers that should answer,
check the degraded state, restore (at once, after a fixed hold, or once served), converge,
and measure it all from the client's side and the directors' own addresses and logs."""

from __future__ import annotations

from typing import Any

from . import checks, faults
from .machines import Machines, Node
from .plan import After, Kind, Scenario, Target
from .probes import holder_figures
from .report import Row
from .stack import seen_in_journal
from .traffic import STEADY, Service, good, served_again

FAILOVER_TIMEOUT = 240    # failure -> detected and served again
# After a split or a hang heals one director keeps the VIPs and the other releases them once it
# has seen the heal (3-6 s in the lab under emulation); when heartbeat then gives the group to
# the one that released them, that one announces them and the keeper lets go when told, or as
# soon as it sees it answer ARP for them (a handover's make-before-break: 1-4 s). Never none.
HEAL_TWO_HOLDERS_S = 15.0
DEGRADED_BEFORE_END = 10  # a timed fault's degraded state is checked this long before it is undone
POLL = 1.0


class Run:
    """The state of one scenario while it runs."""

    def __init__(self, m: Machines, sc: Scenario, active: Node) -> None:
        self.m = m
        self.sc = sc
        self.active = active
        self.standby = next(d for d in m.directors if d is not active)
        self.faults = [faults.make(kind, target, self._targets(target)) for kind, target in sc.faults]
        self.failed_reals = [n for f in self.faults for n in f.nodes if n in m.reals]
        # The director that serves through the fault: the standby if it must take over.
        self.survivor = self.standby if sc.takeover else active
        self.row = Row("scenario", sc.key, sc.title, False)
        self.problems: list[str] = []

    def _targets(self, target: Target) -> list[Node]:
        m = self.m
        return {Target.ACTIVE: [self.active], Target.STANDBY: [self.standby], Target.DIRECTORS: m.directors,
                Target.ONE_REAL: m.reals[:1], Target.ALL_REALS: m.reals}[target]

    def expected(self, svc: Service) -> set[str] | None:
        """Who should answer this service's client while the faults last (None: nobody can)."""
        failed = {n.name for n in self.failed_reals}
        alive = {name for name in svc.weights if name not in failed}
        if alive:
            return alive
        return {"fallback"} if svc.fallback else None

    # -- detection ----------------------------------------------------------------------

    def poll(self, pending: set[str], watch_since: float, t_fail: float) -> bool:
        """One look: has the survivor every VIP (from the watch's latest sample), and which
        failed real servers are out of every service on the director that serves? Returns
        whether the survivor holds every VIP."""
        m = self.m
        latest = [s for s in self.watch.since(watch_since) if s.source == self.survivor.name]
        held = latest[-1].held if latest else None
        vip_held = held is not None and held == frozenset(m.vips)
        now = m.now() - t_fail
        if self.sc.takeover and self.active.name in pending and vip_held:
            self.row.detected[self.active.name] = now
            pending.discard(self.active.name)
        reals = [n for n in self.failed_reals if n.name in pending]
        if reals:
            table = m.ipvs(self.survivor)
            for n in reals:
                if checks.out_of_every_service(m, table, n.name):
                    self.row.detected[n.name] = now
                    pending.discard(n.name)
        return vip_held

    def observer(self) -> tuple[Node, Node] | None:
        """(who logs it, whom it saw go) for a director fault."""
        df = self.sc.director_fault
        if df is None or df[1] is Target.DIRECTORS and df[0] is not Kind.PARTITION:
            return None
        if df[1] is Target.STANDBY:
            return self.active, self.standby
        return self.standby, self.active

    # -- the whole scenario -----------------------------------------------------------------

    def run(self) -> tuple[Row, Node | None]:
        m, sc = self.m, self.sc
        m.progress(f"scenario {sc.key}: {sc.title}")
        transfer = None
        if sc.transfer:
            transfer, problems = m.start_download(self.standby)
            self.problems += problems
        self.watch = m.watch()
        try:
            return self._run(transfer)
        finally:
            self.watch.stop()

    def _run(self, transfer: Any) -> tuple[Row, Node | None]:
        m, sc, row = self.m, self.sc, self.row
        t_fail = m.now()
        row.at_s = m.since_start()
        for f in self.faults:
            self.problems += f.inject(m)
        cut_off: list[tuple[str, float, float]] = []
        at_once = [f for f in self.faults if f.hold == 0]
        for f in at_once:  # a power cycle: on again at once
            self.problems += f.restore(m)
        timed = [f for f in self.faults if f.hold]
        hold_until = t_fail + max(f.hold or 0 for f in timed) if timed else None
        pending = {n.name for n in self.failed_reals} | ({self.active.name} if sc.takeover else set())
        vip_held = not sc.takeover
        served: dict[str, float | None] = {s.label: None for s in m.services if self.expected(s) is not None}
        settled: dict[str, float] = {}
        degraded_done = False
        deadline = t_fail + FAILOVER_TIMEOUT + (600 if at_once else 0)
        while m.now() < deadline:
            if pending or not vip_held:
                vip_held = self.poll(pending, t_fail, t_fail) or vip_held
            if not pending and vip_held:
                for svc in m.services:
                    want = self.expected(svc)
                    if want is None or served[svc.label] is not None:
                        continue
                    settled.setdefault(svc.label, m.now())
                    since = m.answers(svc, settled[svc.label])
                    if any(not good(a, want) for a in since):
                        settled[svc.label] = m.now()
                    elif len(since) >= STEADY:
                        served[svc.label] = served_again(m.answers(svc, t_fail), t_fail, since[-1].t1, want)
            done = not pending and vip_held and all(v is not None for v in served.values())
            # While a timed fault lasts, the survivor's checks are read near its end: heartbeat
            # claims the VIPs at once (lvs-director's harc) and the sync daemon's master role after.
            late = hold_until is not None and m.now() >= hold_until - DEGRADED_BEFORE_END
            if done and late and not degraded_done and self._degraded_applies():
                degraded_done = True
                self.problems += self._degraded()
            if hold_until is not None:
                if m.now() >= hold_until:
                    break
            elif done:
                break
            m.sleep(POLL)
        self._journal(t_fail)
        row.detected_s = max(row.detected.values()) if row.detected else None
        row.served_again = served
        times = [v for v in served.values() if v is not None]
        row.served_again_s = None if len(times) < len(served) else max(times, default=0.0)
        m.progress(f"scenario {sc.key}: detected " + (", ".join(
            f"{k} after {v:.1f} s" for k, v in row.detected.items()) or "nothing")
            + ("; VIPs not served again" if row.served_again_s is None
               else f"; VIPs served again after {row.served_again_s:.1f} s"))
        if pending:
            self.problems.append("not detected: " + ", ".join(sorted(pending)))
        if sc.takeover and not vip_held:
            self.problems.append(f"{self.survivor.name} did not take every VIP")
        unserved = [k for k, v in served.items() if v is None]
        if unserved and sc.director_fault != (Kind.PARTITION, Target.DIRECTORS):
            self.problems.append("not served again: " + ", ".join(unserved))

        # Restore: power the killed machines on again (they take a minute to boot: the degraded
        # state is checked meanwhile), then undo the rest.
        t_restore = m.now()
        m.progress(f"scenario {sc.key}: restoring " + "; ".join(f.words() for f in self.faults))
        untimed = [f for f in self.faults if f.hold is None]
        for f in untimed:
            if f.reboots:
                self.problems += f.restore(m)
        if not timed and not at_once and not unserved and self._degraded_applies():
            self.problems += self._degraded()
        for f in untimed:
            if not f.reboots:
                self.problems += f.restore(m)
        for f in timed:
            self.problems += f.restore(m)
            if f.cuts_off:
                cut_off += [(n.name, t_fail, m.now()) for n in f.nodes]
        booting = [n for f in self.faults if f.reboots for n in f.nodes]
        try:
            m.wait_up(booting, t_restore)
        except Exception as e:  # noqa: BLE001 - the lab's BuilderError, or the fake's
            self.problems.append(str(e))
        expect = self.survivor if sc.after is After.SURVIVOR else None
        ok, _, _, why = checks.converge(m, expect, settle=checks.SETTLE if sc.director_fault else checks.SETTLE_QUIET)
        if not ok:
            self.problems.append(f"did not converge again within {checks.CONVERGE_TIMEOUT} s: {why}")
            for d in m.directors:  # what each did since the restore, while it is in their journals
                m.save_journal(d, f"{sc.key}-{d.name}.converge.journal", checks.CONVERGE_TIMEOUT // 60 + 2)
        if self._heals():  # both directors' own account of the fault and the heal, kept in the workdir
            for d in m.directors:
                m.save_journal(d, f"{sc.key}-{d.name}.heal.journal", int(m.now() - t_fail) // 60 + 2)
        if transfer is not None:
            self.problems += transfer.finish(row, t_fail)
        t_end = m.now()
        holder = checks.vip_holder(m)
        self._figures(t_fail, t_restore, t_end, cut_off, holder)
        row.vip_at_end = holder.name if holder else None
        if ok and expect is not None and holder is not expect:
            self.problems.append(f"the VIPs are on {row.vip_at_end}, not {expect.name}")
        self.problems += self._heal_problems()
        row.seconds = t_end - t_fail
        row.ok = not self.problems
        notes = [f"{row.failed_restoring} failed from the restore on"] if row.failed_restoring else []
        if self._heals() and row.after_restore is not None:
            a = row.after_restore
            notes.append(f"after the heal: two holders {a['two_holders_s']:.0f} s, no holder {a['no_holder_s']:.0f} s, "
                         f"{a['failed']} failed")
        row.detail = "; ".join(self.problems) or "; ".join(
            [self._summary(), *self._transfer_summary(), *notes])
        return row, (holder if ok else None)

    def _heals(self) -> bool:
        """A fault that ends with both directors running, each having served alone or not."""
        df = self.sc.director_fault
        return df is not None and df[0] in (Kind.HANG, Kind.PARTITION, Kind.LINK)

    def _heal_problems(self) -> list[str]:
        """Healing costs no more than the fault: from the heal on one director keeps the VIPs
        without a gap and no request fails; with a second heartbeat path (a serial link, a
        second interface) a partition of one path splits nothing."""
        row, after = self.row, self.row.after_restore
        if not self._heals() or after is None:
            return []
        problems = []
        if self.sc.director_fault == (Kind.PARTITION, Target.DIRECTORS) and len(self.m.cluster.heartbeat_paths) > 1:
            if row.two_holders_s:
                problems.append(f"both directors held the VIPs for {row.two_holders_s:.0f} s although heartbeat has "
                                f"a second path ({', '.join(self.m.cluster.heartbeat_paths)})")
            if row.failed:
                problems.append(f"{row.failed} requests failed although heartbeat has a second path")
        if after["no_holder_s"]:
            problems.append(f"after the heal no director held the VIPs for {after['no_holder_s']:.0f} s")
        if after["two_holders_s"] > HEAL_TWO_HOLDERS_S:
            problems.append(f"after the heal both directors held the VIPs for {after['two_holders_s']:.0f} s")
        if after["failed"]:
            problems.append(f"{after['failed']} requests failed after the heal")
        return problems

    def _degraded(self) -> list[str]:
        """The degraded state, as the survivor (and a standby no fault touched) must show it."""
        standby = None if self.sc.director_fault else self.standby
        problems = checks.degraded_state(self.m, self.survivor, standby, self.failed_reals)
        if problems:  # what the survivor did meanwhile, saved while it is still in its journal
            self.m.save_journal(self.survivor, f"{self.sc.key}-{self.survivor.name}.degraded.journal")
        return problems

    def _degraded_applies(self) -> bool:
        """The survivor's checks mean something while a fault lasts, unless both directors are
        hit (a partition: each thinks it serves alone)."""
        df = self.sc.director_fault
        return df is None or df[1] is not Target.DIRECTORS

    def _journal(self, t_fail: float) -> None:
        """When the observer's own log says it saw the director go (on the lab's clock)."""
        pair = self.observer()
        if pair is None:
            return
        who, gone = pair
        journal = self.m.save_journal(who, f"{self.sc.key}-{who.name}.journal")
        offset = self.m.clock_offset(who)
        if offset is None:
            return
        seen = seen_in_journal(journal, self.m.stack.seen_pattern(gone.name), offset - t_fail)
        if seen is not None and (gone.name in self.row.detected or not self.sc.takeover):
            self.row.detected[gone.name] = seen

    def _figures(self, t_fail: float, t_restore: float, t_end: float, cut_off: list[tuple[str, float, float]],
                 holder: Node | None) -> None:
        m, row = self.m, self.row
        window = [a for s in m.services for a in m.answers(s, t_fail) if a.t0 < t_end]
        row.sent, row.failed = len(window), sum(not a.ok for a in window)
        # Requests lost while machines boot again are reported, not failed: under emulation a
        # booting VM starves the others for seconds (seen 8-16 s after QEMU started, before the
        # guest's network was up, so no packet of the guest's can have caused it).
        row.failed_restoring = sum(not a.ok for a in window if a.t0 >= t_restore)
        samples = self.watch.since(t_fail - 2)
        whole = holder_figures(samples, m.vips, m.macs, t_fail, t_end, cut_off)
        after = holder_figures(samples, m.vips, m.macs, t_restore, t_end, cut_off)
        row.two_holders_s, row.no_holder_s, row.arp_stale_s = whole.two_holders_s, whole.no_holder_s, whole.arp_stale_s
        row.after_restore = {"two_holders_s": after.two_holders_s, "no_holder_s": after.no_holder_s,
                             "failed": row.failed_restoring}
        if holder is not None:
            macs = m.neighbours()
            row.arp_followed = all(macs.get(v) == m.macs[holder.name] for v in m.vips)

    def _summary(self) -> str:
        return "; ".join(f.words() for f in self.faults) + "; restored, converged"

    def _transfer_summary(self) -> list[str]:
        t = self.row.transfer
        if not t:
            return []
        return [f"download of {t['bytes_expected'] / 1e6:.1f} MB across the failover intact (sha256), "
                f"synced to {t['synced_to']}, ended {t['ended_after_failure_s']:.0f} s after the failure"]


def run_scenario(m: Machines, sc: Scenario, active: Node) -> tuple[Row, Node | None]:
    """Run one scenario from a healthy cluster; its row and the director that holds the VIPs
    afterwards (None if the cluster did not converge again)."""
    return Run(m, sc, active).run()
