"""The lab's scenario, fault and check logic, run against a fake cluster (tests/fakecluster.py:
a simulated clock, directors that claim the VIPs after deadtime and settle a split, ldirectord's
weights following health, one client per VIP). The real cluster is proven by test_lab.py."""

from __future__ import annotations

from typing import Any

import pytest

from builder import loading, spec
from builder.lab import SCENARIOS, checks
from builder.lab.plan import After, Kind
from builder.lab.report import Report
from builder.lab.scenario import run_scenario
from builder.lab.upgrade import half_way

from .conftest import REPO
from .fakecluster import FakeLab

PLAN = {sc.key: sc for sc in SCENARIOS}


def two_vips(data: dict[str, Any]) -> dict[str, Any]:
    """The reference cluster plus a second VIP that lists webserver2 only, with wrr."""
    second = {"address": "192.168.1.106", "port": 80, "protocol": "tcp", "scheduler": "wrr",
              "forwarding": "gate", "reals": [{"server": "webserver2", "weight": 2}],
              "check": dict(data["virtual_services"][0]["check"])}
    data["virtual_services"].append(second)
    return data


def fake(data: dict[str, Any] | None = None, broken: str = "") -> FakeLab:
    cluster = loading.load(data)[0] if data is not None else spec.load(None)[0]
    return FakeLab(cluster, broken)


def healthy(m: FakeLab) -> Any:
    report = Report(m.cluster.name, "trixie")
    active = checks.functional_checks(m, report)
    assert active is not None, [r.detail for r in report.rows]
    assert [r.key for r in report.rows] == ["a", "b", "c", "d", "e", "f"] or all(r.ok for r in report.rows)
    return active


SHOP = REPO / "docs" / "examples" / "shop.yaml"
TWO_PATHS = REPO / "docs" / "examples" / "two-paths.yaml"


@pytest.mark.parametrize("cluster", ["reference", "shop", "two-paths"])
@pytest.mark.parametrize("key", [sc.key for sc in SCENARIOS if not sc.transfer])
def test_every_scenario_goes_from_healthy_to_healthy(key: str, cluster: str) -> None:
    examples = {"shop": SHOP, "two-paths": TWO_PATHS}
    m = fake(spec.parse(examples[cluster].read_text()) if cluster in examples else None)
    active = healthy(m)
    row, holder = run_scenario(m, PLAN[key], active)
    assert row.ok, row.detail
    assert holder is not None and row.vip_at_end == holder.name
    assert row.sent and row.two_holders_s is not None and row.no_holder_s is not None
    assert row.arp_followed is True
    assert row.after_restore is not None
    sc = PLAN[key]
    if sc.takeover:
        assert row.detected_s is not None and active.name in row.detected
    if sc.after is After.SURVIVOR:  # auto_failback off: whoever served through the fault keeps the VIPs
        assert (holder is not active) == sc.takeover


def test_a_partition_of_one_path_is_reported_as_split_brain_and_heals_to_one_holder() -> None:
    m = fake()
    row, holder = run_scenario(m, PLAN["partition"], healthy(m))
    assert row.ok and holder is not None
    assert row.two_holders_s is not None and row.two_holders_s > 20  # both held the VIP while split
    assert row.after_restore is not None and row.after_restore["two_holders_s"] < 5
    assert row.detected.get("loadb1") is not None  # the standby's log: its peer is dead


def test_a_heal_that_leaves_the_vips_nowhere_fails_the_row() -> None:
    """heartbeat's own way out of a split, as the lab measured it before lvs-director kept the
    VIPs across the restart: both give them up, restart, and wait before one takes them."""
    m = fake(broken="heal-gap")
    row, holder = run_scenario(m, PLAN["partition"], healthy(m))
    assert not row.ok and holder is not None
    assert "after the heal no director held the VIPs for" in row.detail
    assert "requests failed after the heal" in row.detail


def test_a_heal_that_leaves_both_holding_the_vips_for_long_fails_the_row() -> None:
    """No gap, but the director that was to let go held on for 40 s: clients split between two
    directors, as with the first heal design when heartbeat gave the group to the other."""
    m = fake(broken="slow-release")
    row, holder = run_scenario(m, PLAN["partition"], healthy(m))
    assert not row.ok and holder is not None
    assert "after the heal both directors held the VIPs for" in row.detail, row.detail


def test_half_way_through_an_upgrade_that_adds_a_link_only_that_link_may_be_dead() -> None:
    """A rolling upgrade to two-paths.yaml: the upgraded director hears the other on eth0 and
    not yet on the serial link it alone runs; that state converges, the same row with eth0
    dead does not, and with no link added nothing is excused."""
    old, new = spec.load(None)[0], loading.load(spec.parse(TWO_PATHS.read_text()))[0]
    excused = half_way(old, new)
    assert excused is not None and half_way(old, old) is None
    row = {"check": "heartbeat's links to loadb1", "observed": "/dev/ttyS1 dead, eth0 up", "ok": False}
    assert excused("loadb2", row)
    assert not excused("loadb2", {**row, "observed": "/dev/ttyS1 up, eth0 dead"})
    assert not excused("loadb2", {**row, "check": "peer loadb1", "observed": "dead"})
    m = fake(broken="half-way")
    healthy_now = checks.converge(m, None, timeout=120)
    assert not healthy_now[0] and "heartbeat's links to loadb1: /dev/ttyS1 dead" in healthy_now[3]
    assert checks.converge(m, None, timeout=120, excused=excused)[0]


def test_with_a_serial_link_a_partition_splits_nothing_and_ipfail_moves_the_vips_off_a_cut_director() -> None:
    m = fake(spec.parse(TWO_PATHS.read_text()))
    active = healthy(m)
    row, _ = run_scenario(m, PLAN["partition"], active)
    assert row.ok and (row.two_holders_s, row.failed) == (0, 0), row.detail
    assert row.vip_at_end == active.name
    row, holder = run_scenario(m, PLAN["link"], active)
    assert row.ok and row.two_holders_s == 0, row.detail
    assert holder is not None and holder is not active  # ipfail: the cut director yielded
    assert "ipfail: giving up" in " ".join(t for _, t in active.journal)


def second_link(data: dict[str, Any]) -> dict[str, Any]:
    """two-paths.yaml with a NIC of the directors' own instead of the serial cable."""
    data["heartbeat"]["media"][2] = {"type": "ucast", "interface": "eth1", "addresses": ["10.9.0.1", "10.9.0.2"],
                                     "prefix": 30}
    return data


def test_with_a_link_of_their_own_the_directors_split_on_nothing_either() -> None:
    m = fake(second_link(spec.parse(TWO_PATHS.read_text())))
    assert m.cluster.heartbeat_paths == ("eth0", "eth1")
    active = healthy(m)
    for key in ("partition", "link"):
        row, _ = run_scenario(m, PLAN[key], active)
        assert row.ok and row.two_holders_s == 0, (key, row.detail)


def test_a_hang_is_taken_over_and_the_resumed_director_does_not_keep_the_vip_forever() -> None:
    m = fake()
    active = healthy(m)
    row, holder = run_scenario(m, PLAN["hang"], active)
    assert row.ok, row.detail
    assert row.detected_s is not None and row.detected_s < 10
    assert row.served_again_s is not None


def test_a_standby_that_never_takes_over_fails_the_row() -> None:
    m = fake(broken="no-takeover")
    row, _ = run_scenario(m, PLAN["2-kill"], healthy(m))
    assert not row.ok
    assert "loadb2 did not take every VIP" in row.detail and "not detected: loadb1" in row.detail


def test_a_split_that_never_settles_fails_the_row_and_keeps_both_directors_journals() -> None:
    m = fake(broken="no-settle")
    row, holder = run_scenario(m, PLAN["partition"], healthy(m))
    assert not row.ok and holder is None
    assert f"did not converge again within {checks.CONVERGE_TIMEOUT} s" in row.detail
    assert {"partition-loadb1.converge.journal", "partition-loadb2.converge.journal"} <= set(m.journals_saved)


def test_a_sick_real_server_counts_only_once_out_of_every_service_that_lists_it(reference: dict[str, Any]) -> None:
    m = fake(two_vips(reference))
    assert [s.label for s in m.services] == ["192.168.1.105:80", "192.168.1.106:80"]
    active = healthy(m)
    # webserver2 is behind both VIPs: the first real of the plan is webserver1, so break webserver2
    row, holder = run_scenario(m, PLAN["real-stopped"], active)
    assert row.ok, row.detail
    assert set(row.served_again) == {"192.168.1.105:80", "192.168.1.106:80"}
    # the second VIP lists webserver1 not at all: nothing to wait for there, served throughout
    assert row.served_again["192.168.1.106:80"] == 0.0


def test_a_second_vip_that_stops_working_fails_the_lab(reference: dict[str, Any]) -> None:
    m = fake(two_vips(reference), broken="second-vip-unchecked")
    report = Report(m.cluster.name, "trixie")
    assert checks.functional_checks(m, report) is None
    assert report.error is not None and "192.168.1.106:80: webserver2" in report.error


def test_the_fault_classes_cover_every_kind_the_plan_names() -> None:
    from builder.lab.faults import FAULTS
    assert set(FAULTS) == set(Kind)
    assert {k for sc in SCENARIOS for k, _ in sc.faults} == set(Kind)


def test_the_shop_example_validates_and_spreads_by_its_weights() -> None:
    cluster, problems = spec.load(SHOP)
    assert cluster.name == "shop" and len(cluster.real_servers) == 3 and len(cluster.vips) == 2
    # the API has no fallback, on purpose; its directors have the tutorial's one heartbeat path
    assert [p.path for p in problems] == ["virtual_services[1].fallback", "heartbeat.media", "heartbeat.respawn[0]"]
    m = FakeLab(cluster)
    report = Report(cluster.name, "trixie")
    assert checks.functional_checks(m, report) is not None
    f = report.rows[-1]
    assert f.key == "f" and f.ok, f.detail
    shop, api = f.detail.split("; ")
    assert shop.split(": ")[1].split().count("web-1") == 12  # 3 of every 6 over four cycles of wrr 3:2:1
    assert sorted(set(api.split(": ")[1].split())) == ["web-1", "web-3"]


def test_convergence_gives_up_at_once_on_a_guest_whose_kernel_panicked() -> None:
    """Under QEMU's TCG a guest kernel panics now and then (a double fault in kmalloc on a
    survivor, in one full-tier run): it answers nothing again, so converge says so at once
    instead of waiting CONVERGE_TIMEOUT for an answer that cannot come."""
    m = fake()
    healthy(m)
    survivor = m.directors[1]
    survivor.frozen, survivor.panic = True, "Kernel panic - not syncing: Fatal exception in interrupt"
    start = m.t
    ok, _, _, why = checks.converge(m, None)
    assert not ok
    assert why == (f"the guest kernel panicked on {survivor.name} (Kernel panic - not syncing: Fatal exception "
                   "in interrupt; see its console)")
    assert m.t - start < 5


def test_convergence_waits_out_a_stack_that_restarts_after_the_cluster_looked_healthy() -> None:
    """heartbeat restarts itself ~10 s after a healed partition: a cluster that looks healthy
    just before is not converged; the next row would begin inside the new instance's initdead."""
    m = fake()
    healthy(m)
    restart_at, standby = m.t + 8, m.directors[1]
    tick = m.tick

    def restarting_tick() -> None:
        tick()
        if m.t >= restart_at and standby.generation == 2:
            standby.generation += 1  # its stack restarted in place: the checks still pass
    standby.generation = 2
    m.tick = restarting_tick  # type: ignore[method-assign]
    start = m.t
    ok, _, _, why = checks.converge(m, None)
    assert ok, why
    assert standby.generation == 3
    assert m.t >= restart_at + checks.SETTLE > start + checks.SETTLE
