"""lvs-cluster-check (the director package's check command): how it reads the configuration
it is shipped with and the tables the tools print. Its verdicts on a running cluster are
tested where one runs: the image tests and the lab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from builder import deb, lab, render, spec
from builder.model import Role

CHECK = "usr/sbin/lvs-cluster-check"

# `ipvsadm -L -n` on an active director of the reference cluster (ipvsadm 1.31).
IPVSADM_HEALTHY = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.1.105:80 rr
  -> 192.168.1.101:80             Route   1      0          3
  -> 192.168.1.102:80             Route   1      1          2
"""
IPVSADM_DEGRADED = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.1.105:80 rr
  -> 127.0.0.1:80                 Route   1      0          0
  -> 192.168.1.101:80             Route   0      0          0
  -> 192.168.1.102:80             Route   0      0          1
FWM  7 wlc persistent 300
  -> 192.168.1.102:0              Masq    3      0          0
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path, Path]:
    """The director package's files of the reference cluster, written under a root; the check
    command loaded from there (the rendered file is the one a node runs)."""
    root = tmp_path_factory.mktemp("root")
    c, _ = spec.load(None)
    for rel, f in render.render(c, Role.DIRECTOR, epoch=deb.DEFAULT_EPOCH).items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f.content)
        p.chmod(f.mode)
    (root / "etc/ha.d/ldirectord.cf").symlink_to("ldirectord.cf.lvs-director")
    return lab.cluster_check_module(root / CHECK), root / CHECK, root / "etc/ha.d"


def test_reads_the_nodes_resources_and_services_it_is_shipped_with(installed: tuple[ModuleType, Path, Path]) -> None:
    check, _, ha_dir = installed
    assert check.read_hacf(str(ha_dir)) == ["loadb1", "loadb2"]
    assert check.read_haresources(str(ha_dir)) == [
        ("LVSSyncDaemonSwap", "master"), ("LVSVip", "192.168.1.105/24/eth0/192.168.1.255")]
    [vs] = check.read_ldirectord(str(ha_dir / "ldirectord.cf"))
    assert vs["service"] == "TCP  192.168.1.105:80"
    assert vs["scheduler"] == "rr"
    assert vs["reals"] == [{"address": "192.168.1.101:80", "forward": "Route"},
                           {"address": "192.168.1.102:80", "forward": "Route"}]
    assert vs["fallback"] == {"address": "127.0.0.1:80", "forward": "Route"}


def test_parses_ipvsadm_tables(installed: tuple[ModuleType, Path, Path]) -> None:
    check, _, _ = installed
    assert check.parse_ipvsadm(IPVSADM_HEALTHY) == {"TCP  192.168.1.105:80": {"scheduler": "rr", "reals": {
        "192.168.1.101:80": {"forward": "Route", "weight": 1, "active": 0, "inactive": 3},
        "192.168.1.102:80": {"forward": "Route", "weight": 1, "active": 1, "inactive": 2}}}}
    degraded = check.parse_ipvsadm(IPVSADM_DEGRADED)
    assert {k: v["weight"] for k, v in degraded["TCP  192.168.1.105:80"]["reals"].items()} == {
        "127.0.0.1:80": 1, "192.168.1.101:80": 0, "192.168.1.102:80": 0}
    assert degraded["FWM  7"] == {"scheduler": "wlc", "reals": {
        "192.168.1.102:0": {"forward": "Masq", "weight": 3, "active": 0, "inactive": 0}}}


def test_on_a_machine_that_is_no_director_the_runtime_checks_fail(installed: tuple[ModuleType, Path, Path]) -> None:
    _, script, ha_dir = installed
    proc = subprocess.run([sys.executable, script, "--json", "--expect", "active", "--ha-dir", ha_dir],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    by_name = {c["check"]: c for c in report["checks"]}
    assert by_name["role"] == {"group": "role", "check": "role", "expected": "active", "observed": "standby",
                               "ok": False}
    # each row names its group: what the lab (and any other reader) selects by, not the wording
    assert {c["check"]: c["group"] for c in report["checks"] if c["group"] != "heartbeat"} == {
        "role": "role", "VIP 192.168.1.105/24 on eth0": "vip", "ldirectord ldirectord.cf status": "ldirectord",
        "LVSSyncDaemonSwap master status": "sync",
        "ipvsadm -L -n": "ipvs-service", "ipvsadm: TCP  192.168.1.105:80 rr": "ipvs-service",
        "ipvsadm: -> 192.168.1.101:80 Route": "ipvs-real", "ipvsadm: -> 192.168.1.102:80 Route": "ipvs-real",
        "ipvsadm: fallback 127.0.0.1:80": "ipvs-fallback"}
    assert by_name["VIP 192.168.1.105/24 on eth0"]["ok"] is False
    assert by_name["heartbeat"]["ok"] is False
    assert set(by_name) >= {"ldirectord ldirectord.cf status", "LVSSyncDaemonSwap master status",
                            "ipvsadm: TCP  192.168.1.105:80 rr", "ipvsadm: -> 192.168.1.101:80 Route",
                            "ipvsadm: -> 192.168.1.102:80 Route", "ipvsadm: fallback 127.0.0.1:80"}


def test_what_a_standby_should_run_follows_haresources(tmp_path: Path,
                                                     installed: tuple[ModuleType, Path, Path]) -> None:
    """ldirectord not a heartbeat resource (ours): running with a live table on the standby too;
    the tutorial's haresources (ldirectord moves with the VIP): stopped, no table, on the standby."""
    _, script, ha_dir = installed

    def expected(ha: Path) -> dict[str, str]:
        proc = subprocess.run([sys.executable, script, "--json", "--expect", "standby", "--ha-dir", ha],
                              capture_output=True, text=True)
        return {c["check"]: c["expected"] for c in json.loads(proc.stdout)["checks"]}

    ours = expected(ha_dir)
    assert ours["ldirectord ldirectord.cf status"] == "running"
    assert ours["ipvsadm: TCP  192.168.1.105:80 rr"] == "listed"
    assert ours["LVSSyncDaemonSwap master status"] == "master stopped"
    tutorial = tmp_path / "ha.d"
    shutil.copytree(ha_dir, tutorial, symlinks=True)
    (tutorial / "haresources").write_text("loadb1 ldirectord::ldirectord.cf LVSSyncDaemonSwap::master "
                                          "IPaddr2::192.168.1.105/24/eth0/192.168.1.255\n")
    theirs = expected(tutorial)
    assert theirs["ldirectord ldirectord.cf status"] == "stopped"
    assert theirs["ipvsadm: TCP  192.168.1.105:80 rr"] == "not listed"


def test_an_unreadable_configuration_is_one_line_and_exit_2(tmp_path: Path,
                                                            installed: tuple[ModuleType, Path, Path]) -> None:
    _, script, _ = installed
    (tmp_path / "ha.cf").write_text("node a\nnode b\n")
    proc = subprocess.run([sys.executable, script, "--ha-dir", tmp_path], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == f"lvs-cluster-check: {tmp_path}/haresources: No such file or directory\n"
    assert proc.stdout == ""


def test_ldirectord_status_is_read_as_ldirectord_reads_it(tmp_path: Path,
                                                          installed: tuple[ModuleType, Path, Path]) -> None:
    """`ldirectord CF status`'s verdict, from its pid file and that process's command line."""
    check, _, _ = installed
    config = "/etc/ha.d/ldirectord.cf"
    assert check.ldirectord_status(config, str(tmp_path)) == (False, f"ldirectord is stopped for {config}")
    pidfile = tmp_path / "ldirectord.ldirectord.cf.pid"
    # a live process that is not ldirectord (this test's own): a stale pid file
    pidfile.write_text(f"{os.getpid()}\n")
    assert check.ldirectord_status(config, str(tmp_path)) == (
        False, f"ldirectord stale pid file {pidfile} for {config}")
    # a process whose command line says ldirectord
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "ldirectord"])
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 10
        while b"ldirectord" not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)  # until the child has exec'd
        pidfile.write_text(f"{proc.pid}\n")
        assert check.ldirectord_status(config, str(tmp_path)) == (
            True, f"ldirectord for {config} is running with pid: {proc.pid}")
    finally:
        proc.kill()
        proc.wait()


def test_a_configuration_put_in_place_after_heartbeat_started_is_pending(
        tmp_path: Path, installed: tuple[ModuleType, Path, Path]) -> None:
    """ha.cf and haresources, which heartbeat reads only at start, put in place (as dpkg does:
    a new file renamed over the old) after it started; authkeys, which it rereads, is no matter."""
    check, _, ha = installed
    for name in ("ha.cf", "haresources", "authkeys"):
        shutil.copy(ha / name if name != "authkeys" else ha / "ha.cf", tmp_path / name)
    now = time.time()
    assert check.pending_configuration(str(tmp_path), now + 60) == []  # started after: read
    assert check.pending_configuration(str(tmp_path), now - 60) == ["ha.cf", "haresources"]
    started = time.time()
    time.sleep(2.1)  # past the check's second of slack
    (tmp_path / "haresources.dpkg-new").write_bytes((tmp_path / "haresources").read_bytes())
    (tmp_path / "haresources.dpkg-new").rename(tmp_path / "haresources")
    (tmp_path / "authkeys").touch()
    assert check.pending_configuration(str(tmp_path), started - 1) == ["haresources"]
