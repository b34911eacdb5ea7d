"""How the lab reads its client's log and reports: when the VIP served again, whether real
servers answered in turn, the table. (The lab itself runs in test_lab.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from builder import lab
from builder.lab import Answer, Report, Row, read_answers, served_again
from builder.lab.stack import Heartbeat, Keepalived, seen_in_journal
from builder.lab.traffic import fits_scheduler, sample_size
from builder.model import Scheduler


def ok(t: float, who: str) -> Answer:
    return Answer(t, t + 0.1, True, who, None)


def bad(t: float) -> Answer:
    return Answer(t, t + 1.0, False, None, "timed out")


def test_served_again_is_the_end_of_the_outage_the_failure_caused() -> None:
    answers = [ok(0, "w1"), bad(1), ok(2, "w2"), bad(3), *(ok(4 + i, "w2") for i in range(5))]
    assert served_again(answers, 0.5, 9, {"w2"}) == 4.1 - 0.5
    # an answer from a server that should not answer now is no better than a failure
    assert served_again(answers, 0.5, 9, {"fallback"}) == 9 - 0.5
    # no answer failed after the failure: no outage (answers before it are not looked at)
    assert served_again(answers, 3.5, 9, {"w2"}) == 0.0
    assert served_again([bad(0), ok(1, "w2")], 0.5, 9, {"w2"}) == 0.0


def answers(*whos: str) -> list[Answer]:
    return [ok(i, w) for i, w in enumerate(whos)]


def test_round_robin_wants_every_real_server_the_same_share() -> None:
    rr = Scheduler.RR
    both = {"w1": 1, "w2": 1}
    assert sample_size(both, rr) == 8  # four cycles
    assert fits_scheduler(answers(*["w1", "w2"] * 4), both, rr)
    # threads of one client reaching the director out of order: still each its share, within one
    assert fits_scheduler(answers("w1", "w1", "w2", "w2", "w1", "w2", "w1", "w2"), both, rr)
    assert fits_scheduler(answers("w1", "w2", "w1", "w1", "w2", "w1", "w2", "w2"), both, rr)
    assert not fits_scheduler(answers(*["w1"] * 8), both, rr)
    assert not fits_scheduler(answers("w1", "w1", "w1", "w2", "w1", "w1", "w2", "w1"), both, rr)  # 6:2
    assert not fits_scheduler([*answers(*["w1", "w2"] * 3), bad(6), ok(7, "w2")], both, rr)
    assert not fits_scheduler(answers("w1", "w2", "w1", "w2"), both, rr)  # too few to tell
    # rr ignores weights other than 0: a server at weight 0 gets nothing
    assert fits_scheduler(answers(*["w1"] * 4), {"w1": 5, "w2": 0}, rr)


def test_weighted_schedulers_are_judged_by_their_weights_not_by_alternation() -> None:
    weights = {"w1": 3, "w2": 2, "w3": 1}
    assert sample_size(weights, Scheduler.WRR) == 24
    # IPVS's wrr, four cycles: 12:8:4
    cycle = ["w1", "w1", "w2", "w1", "w2", "w3"]
    assert fits_scheduler(answers(*cycle * 4), weights, Scheduler.WRR)
    # strict alternation would fail this; what counts is each server's share
    shuffled = ["w1", "w2", "w1", "w3", "w1", "w2"] * 4
    assert fits_scheduler(answers(*shuffled), weights, Scheduler.WRR)
    # equal shares are wrong for 3:2:1
    assert not fits_scheduler(answers(*["w1", "w2", "w3"] * 8), weights, Scheduler.WRR)
    # 6:4:2 and 6:4:2 are the same proportions
    assert sample_size({"w1": 6, "w2": 4, "w3": 2}, Scheduler.WRR) == 24
    # wlc (least connections, weighted): one client's short connections spread by weight too
    assert fits_scheduler(answers(*cycle * 4), weights, Scheduler.WLC)


def test_a_hashing_scheduler_sends_one_client_to_one_listed_server() -> None:
    weights = {"w1": 1, "w2": 1}
    assert fits_scheduler(answers(*["w2"] * 4), weights, Scheduler.SH)
    assert not fits_scheduler(answers("w1", "w2", "w1", "w2"), weights, Scheduler.SH)
    assert not fits_scheduler(answers(*["w9"] * 4), weights, Scheduler.SH)


def test_read_answers_skips_a_line_being_written(tmp_path: Path) -> None:
    log = tmp_path / "client.jsonl"
    log.write_text(json.dumps({"t0": 1.0, "t1": 1.5, "ok": True, "who": "w1"}) + "\n" + '{"t0": 2.0, "o')
    assert read_answers(log) == [Answer(1.0, 1.5, True, "w1", None)]
    assert read_answers(tmp_path / "missing") == []


def test_the_report_fails_on_any_failed_row_or_an_error() -> None:
    report = Report("reference", "trixie", [Row("check", "a", "VIP", True, "loadb1: present")])
    assert report.ok
    report.rows.append(Row("scenario", "1", "one web server fails", False, "not detected: webserver1",
                           sent=40, failed=40))
    assert not report.ok
    table = report.table()
    assert "| 1 | one web server fails | FAIL | - | - | 40 / 40 | - | - | - | - | not detected: webserver1 |" in table
    assert table.endswith("lab: FAILED")
    assert not Report("reference", "trixie", [], error="boom").ok
    assert not Report("reference", "trixie", []).ok  # nothing checked proves nothing


def test_notes_are_shown_and_do_not_fail_the_report() -> None:
    report = Report("reference", "trixie", [Row("check", "a", "VIP", True, "loadb1: present")],
                    notes=["webserver1: the guest kernel panicked while booting; powered on again"])
    assert report.ok
    assert "note: webserver1: the guest kernel panicked while booting; powered on again" in report.table()


def test_a_boot_is_judged_by_what_it_wrote_not_by_earlier_boots(tmp_path: Path) -> None:
    from builder.qemu import Vm
    vm = Vm(name="w1", image=tmp_path / "x.qcow2", workdir=tmp_path)
    vm.console.write_text("Linux version 6.12\nKernel panic - not syncing\n")
    vm.console_mark = vm.console.stat().st_size  # what start() records before QEMU runs
    with vm.console.open("a") as f:
        f.write("Linux version 6.12\nRun /init as init process\n")
    assert "Kernel panic" not in vm.console_since_start()
    assert "Run /init" in vm.console_since_start()


def test_the_client_address_is_free_in_the_spec_subnet() -> None:
    from builder import spec

    cluster, _ = spec.load(None)
    assert str(lab.client_address(cluster)) == "192.168.1.254/24"


# Lines as a survivor's `journalctl -b -o short-monotonic` wrote them in the lab.
JOURNAL = """\
[  108.798471] loadb2 heartbeat[502]: [502]: info: Status update for node loadb1: status active
[  202.334323] loadb2 heartbeat[503]: [503]: WARN: node loadb1: is dead
[  202.335815] loadb2 heartbeat[503]: [503]: info: Resources being acquired from loadb1.
[  305.100000] loadb2 heartbeat[503]: [503]: info: Received shutdown notice from 'loadb1'.
[  401.200000] loadb2 lvs-director[911]: loadb1 hands over: VIPs claimed (192.168.1.105/24/eth0/...); heartbeat ...
[  403.900000] loadb2 heartbeat[503]: [503]: info: Received shutdown notice from 'loadb1'.
[   99.000000] loadb1 Keepalived_vrrp[420]: (VI_1) Entering MASTER STATE
[  203.500000] loadb1 Keepalived_vrrp[420]: (VI_1) Entering MASTER STATE
"""


def test_detection_is_read_from_the_survivors_log_on_the_labs_clock() -> None:
    hb, ka = Heartbeat(), Keepalived()
    # the failure at guest uptime 197.0: heartbeat declared loadb1 dead 5.3 s later
    assert round(seen_in_journal(JOURNAL, hb.seen_pattern("loadb1"), -197.0) or -1, 3) == 5.334
    # a clean stop after a later failure: the shutdown notice, not the earlier death
    assert round(seen_in_journal(JOURNAL, hb.seen_pattern("loadb1"), -300.0) or -1, 3) == 5.1
    # keepalived: the survivor's first MASTER state after the failure, not the one at boot
    assert round(seen_in_journal(JOURNAL, ka.seen_pattern("loadb2"), -200.0) or -1, 3) == 3.5
    assert seen_in_journal(JOURNAL, hb.seen_pattern("loadb2"), -197.0) is None  # nothing about loadb2
    # a clean stop of a director that hands over: the survivor knew when it claimed the VIPs
    assert round(seen_in_journal(JOURNAL, hb.seen_pattern("loadb1"), -400.0) or -1, 3) == 1.2
    assert seen_in_journal(JOURNAL, hb.seen_pattern("loadb1"), -500.0) is None  # all before the failure


def test_late_heartbeats_are_read_from_the_journal_with_their_time() -> None:
    journal = ("[  301.250000] loadb2 heartbeat[503]: [503]: WARN: Late heartbeat: Node loadb1: interval 1620 ms "
               "(> deadtime)\n"
               "[  402.500000] loadb2 heartbeat[503]: [503]: WARN: Late heartbeat: Node loadb1: interval 2110 ms\n")
    assert Heartbeat.late_heartbeats(journal) == [(301.25, 1620), (402.5, 2110)]
    assert Heartbeat.late_heartbeats("") == []


def test_every_column_of_the_table_is_documented_in_the_json() -> None:
    report = Report("reference", "trixie", [Row("check", "a", "VIP", True, "loadb1: present")])
    header = report.table().splitlines()[2]
    named = [c.strip() for c in header.strip("|").split("|")][2:-1]  # between the title and the details
    assert set(named) <= set(report.to_json()["columns"]), set(named) - set(report.to_json()["columns"])


def test_holder_figures_from_samples() -> None:
    from builder.lab.probes import Sample, holder_figures

    vip = "192.168.1.105"
    macs = {"d1": "52:54:00:00:00:01", "d2": "52:54:00:00:00:02"}
    held, free = frozenset({vip}), frozenset[str]()
    samples = []
    for t in range(0, 30):
        # d1 holds until 10, frozen (no answer) 10-20 while d2 holds from 13, both hold 20-25, d1 only after
        d1 = held if t < 10 or t >= 20 else None
        d2 = held if 13 <= t < 25 else free
        samples += [Sample(t, "d1", d1), Sample(t, "d2", d2),
                    Sample(t, "client", None, {vip: macs["d2"] if 14 <= t < 27 else macs["d1"]})]
    f = holder_figures(samples, [vip], macs, 0, 30)
    assert f.two_holders_s == 5.0          # 20-25
    assert f.no_holder_s == 3.0            # 10-13: d1 frozen, d2 not yet
    assert f.arp_stale_s == 3.0            # 13-14 (d2 holds, entry on d1) and 25-27 (d1 again, entry on d2)
    # a director cut off (its link down) 20-25 holds nothing anyone reaches: no second holder then
    assert holder_figures(samples, [vip], macs, 0, 30, [("d1", 20, 25)]).two_holders_s == 0.0
    # d2 unheard of 10-13 (its agent busy, no sample at all): unknown, neither holder nor none
    gap = [s for s in samples if not (s.source == "d2" and 5 <= s.t < 13)]
    assert holder_figures(gap, [vip], macs, 0, 30).no_holder_s == 0.0


def test_a_director_holds_the_vips_on_its_cluster_interface_only() -> None:
    from builder.lab.probes import held_vips

    vips = ["192.168.1.105", "192.168.1.106"]
    # as the guest agent lists them: an address labelled eth0:1 is eth0's; a VIP on lo (a real
    # server's way) or on another NIC is not held on the cluster interface
    agent = {"lo": ["127.0.0.1", "192.168.1.106"], "eth0": ["192.168.1.103"], "eth0:1": ["192.168.1.105"],
             "eth1": ["192.168.1.106"]}
    assert held_vips(agent, "eth0", vips) == frozenset({"192.168.1.105"})
    assert held_vips({"eth0": ["192.168.1.103"]}, "eth0", vips) == frozenset()
    assert held_vips(agent, "eth1", vips) == frozenset({"192.168.1.106"})
