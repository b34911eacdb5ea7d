"""Rendered files: golden files for the reference cluster, the tutorial's lines, the writer."""

from __future__ import annotations

import gzip
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import authkey, deb, loading, render, spec
from builder.cli import cli
from builder.model import Extra, Kind, Role

from .conftest import GOLDEN, REPO, write_spec

KEY = "0" * 64
RING = authkey.Ring(1, 1, ((1, KEY),))


def rendered(role: Kind, data: dict[str, Any] | None = None, ring: authkey.Ring = RING) -> dict[str, render.FileSpec]:
    c, _ = loading.load(data) if data is not None else spec.load(None)
    key = ring if role is Extra.CLUSTER_KEY else None
    files = render.render(c, role, key, epoch=deb.DEFAULT_EPOCH)
    for name, f in render.render_control(c, role, key).items():
        files[f"DEBIAN/{name}"] = f
    return files


@pytest.mark.parametrize("role", [*Role, Extra.CLUSTER_KEY], ids=[*(r.value for r in Role), Extra.CLUSTER_KEY.value])
def test_golden(role: Kind, update_golden: bool) -> None:
    files = rendered(role)
    base = GOLDEN / role.value
    if update_golden:
        for rel, f in files.items():
            target = base / (rel[:-3] if rel.endswith(".gz") else rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.decompress(f.content) if rel.endswith(".gz") else f.content)
    expected = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    assert {rel[:-3] if rel.endswith(".gz") else rel for rel in files} == expected
    for rel, f in files.items():
        content = gzip.decompress(f.content) if rel.endswith(".gz") else f.content
        golden = base / (rel[:-3] if rel.endswith(".gz") else rel)
        assert content.decode() == golden.read_text(), f"{rel} differs from {golden}; rerun with --update-golden"


def _significant(text: str) -> list[str]:
    """Lines without comments and blank lines, whitespace folded: how the tutorial is compared."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(re.sub(r"\s+", " ", line))
    return out


TUTORIAL_HA_CF = """
logfacility        local0
bcast        eth0               # Linux
mcast eth0 225.0.0.1 694 1 0
auto_failback off
node        loadb1
node        loadb2
respawn hacluster /usr/lib/heartbeat/ipfail
apiauth ipfail gid=haclient uid=hacluster
"""
TUTORIAL_HARESOURCES = """
loadb1 \\
        ldirectord::ldirectord.cf \\
        LVSSyncDaemonSwap::master \\
        IPaddr2::192.168.1.105/24/eth0/192.168.1.255
"""
TUTORIAL_LDIRECTORD_CF = """
checktimeout=10
checkinterval=2
autoreload=no
logfile="local0"
quiescent=yes

virtual=192.168.1.105:80
        real=192.168.1.101:80 gate
        real=192.168.1.102:80 gate
        fallback=127.0.0.1:80 gate
        service=http
        request="ldirector.html"
        receive="Test Page"
        scheduler=rr
        protocol=tcp
        checktype=negotiate
"""
TIMING = ("keepalive", "warntime", "deadtime", "initdead")


def test_ha_cf_is_the_tutorials_line_for_line() -> None:
    ours = _significant(rendered(Role.DIRECTOR)["etc/ha.d/ha.cf"].content.decode())
    ours = [line for line in ours if not line.startswith(TIMING)]
    tutorial = _significant(TUTORIAL_HA_CF)
    # The one deliberate difference: Debian's heartbeat 3.0.6 moved ipfail to /usr/libexec.
    tutorial = [line.replace("/usr/lib/heartbeat/ipfail", "/usr/libexec/heartbeat/ipfail") for line in tutorial]
    assert ours == tutorial


def test_haresources_is_the_tutorials_without_ldirectord() -> None:
    ours = _significant(rendered(Role.DIRECTOR)["etc/ha.d/haresources"].content.decode())
    node, ldirectord, sync, vip = " ".join(_significant(TUTORIAL_HARESOURCES.replace("\\", ""))).split()
    assert ldirectord == "ldirectord::ldirectord.cf"
    # The deliberate differences: ldirectord runs on both directors from boot, so a takeover
    # moves only the sync daemon's master role and the VIP, claimed with our LVSVip (IPaddr2's
    # argument, a few commands instead of the OCF agent's checks). The sync role stays first:
    # it is the group's key, which lvs-director's harc never claims (test_install).
    assert ours == [" ".join((node, sync, vip.replace("IPaddr2::", "LVSVip::")))]


def test_ldirectord_cf_is_the_tutorials_line_for_line() -> None:
    text = rendered(Role.DIRECTOR)["etc/ha.d/ldirectord.cf.lvs-director"].content.decode()
    ours = "maintenancedir=/var/lib/lvs-director/maintenance"  # the one line the tutorial lacks
    assert ours in _significant(text)
    assert [line for line in _significant(text) if line != ours] == _significant(TUTORIAL_LDIRECTORD_CF)
    # ldirectord reads a virtual's options from indented lines: each must be indented.
    body = text.split("virtual=", 1)[1].splitlines()[1:]
    assert body and all(line.startswith("\t") for line in body if line.strip())


def test_authkeys_is_sha1_with_the_cluster_key_and_root_only_and_in_lvs_cluster_key_alone() -> None:
    f = rendered(Extra.CLUSTER_KEY)["etc/ha.d/authkeys"]
    assert _significant(f.content.decode()) == ["auth 1", f"1 sha1 {KEY}"]
    assert f.mode == 0o600
    for role in Role:
        assert not [p for p, g in rendered(role).items() if KEY.encode() in g.content], role


def test_authkeys_in_a_rotation_lists_both_keys_and_signs_with_the_one_auth_names() -> None:
    ring = RING.rotated(authkey.RotateStep.ADD, "1" * 64).rotated(authkey.RotateStep.SIGN)
    files = rendered(Extra.CLUSTER_KEY, ring=ring)
    authkeys = _significant(files["etc/ha.d/authkeys"].content.decode())
    assert authkeys == ["auth 2", f"1 sha1 {KEY}", f"2 sha1 {'1' * 64}"]
    record = files["usr/share/lvs-cluster-key/fingerprints"].content.decode()
    assert KEY not in record and authkey.parse_record(record) == authkey.record_of(ring)
    changelog = files["usr/share/doc/lvs-cluster-key/changelog.gz"].content
    assert "lvs-cluster-key (3)" in gzip.decompress(changelog).decode()
    # The sign step's package leaves the switch to the admin, on both directors at once; the
    # others have heartbeat reread at once.
    postinst = files["DEBIAN/postinst"].content.decode()
    assert "run lvs-cluster-key-switch on both" in postinst and "lvs-cluster-key-switch >/dev/null" not in postinst
    for other in (RING, ring.rotated(authkey.RotateStep.DROP)):
        other_postinst = rendered(Extra.CLUSTER_KEY, ring=other)["DEBIAN/postinst"].content.decode()
        assert "lvs-cluster-key-switch >/dev/null" in other_postinst


def test_realserver_pages_and_vip(reference: dict[str, Any]) -> None:
    files = rendered(Role.REALSERVER)
    assert files["usr/share/lvs-realserver/www/ldirector.html"].content == b"Test Page\n"
    unit = files["usr/lib/systemd/system/lvs-realserver.service"].content.decode()
    assert "ExecStart=ip address replace 192.168.1.105/32 dev lo label lo:0" in unit
    sysctl = _significant(files["etc/sysctl.d/60-lvs-realserver.conf"].content.decode())
    assert sorted(sysctl) == sorted([
        "net.ipv4.conf.all.arp_ignore = 1", "net.ipv4.conf.all.arp_announce = 2",
        "net.ipv4.conf.eth0.arp_ignore = 1", "net.ipv4.conf.eth0.arp_announce = 2"])


def test_director_modules_and_forwarding() -> None:
    files = rendered(Role.DIRECTOR)
    mods = _significant(files["etc/modules-load.d/lvs-director.conf"].content.decode())
    assert mods == sorted(["ip_vs", "ip_vs_dh", "ip_vs_ftp", "ip_vs_lblc", "ip_vs_lblcr", "ip_vs_lc", "ip_vs_nq",
                           "ip_vs_rr", "ip_vs_sed", "ip_vs_sh", "ip_vs_wlc", "ip_vs_wrr"])
    assert _significant(files["etc/sysctl.d/60-lvs-director.conf"].content.decode()) == [
        "net.ipv4.ip_forward = 1", "net.ipv4.vs.expire_nodest_conn = 1", "net.ipv4.vs.expire_quiescent_template = 1",
        # the spec's interface (network.interface)
        "net/ipv4/neigh/eth0/base_reachable_time_ms = 1000", "net/ipv4/neigh/eth0/delay_first_probe_time = 1",
        "net/ipv4/neigh/eth0/retrans_time_ms = 500"]


def test_a_richer_spec_renders_every_option(reference: dict[str, Any]) -> None:
    vs = reference["virtual_services"][0]
    vs.update(scheduler="mh", persistent=600, netmask="255.255.255.0", quiescent=False)
    vs["check"].update(virtualhost="www.example.org", interval=5, failurecount=3)
    vs["reals"][1]["weight"] = 3
    reference["virtual_services"].append({
        "address": "192.168.1.106", "protocol": "fwm", "fwmark": 7, "forwarding": "ipip", "scheduler": "sh",
        "check": {"type": "external", "command": "/usr/local/bin/check"}})
    reference["heartbeat"]["media"] += [{"type": "ucast", "interface": "eth1", "addresses": ["10.9.0.1", "10.9.0.2"],
                                          "prefix": 30},
                                         {"type": "serial", "device": "/dev/ttyS1", "baud": 115200}]
    reference["heartbeat"]["timing"] = {"keepalive": 0.5, "warntime": 2, "deadtime": 3, "initdead": 10}
    files = rendered(Role.DIRECTOR, reference)
    ld = files["etc/ha.d/ldirectord.cf.lvs-director"].content.decode()
    for line in ("\tscheduler=mh", "\tpersistent=600", "\tnetmask=255.255.255.0", "\tquiescent=no",
                 "\tvirtualhost=www.example.org", "\tcheckinterval=5", "\tfailurecount=3",
                 "\treal=192.168.1.102:80 gate 3", "virtual=7", "\tprotocol=fwm", "\treal=192.168.1.101 ipip",
                 '\tcheckcommand="/usr/local/bin/check"', "\tchecktype=external"):
        assert line in ld.splitlines()
    ha = files["etc/ha.d/ha.cf"].content.decode().splitlines()
    assert ha.index("baud 115200") < ha.index("bcast eth0")  # heartbeat: baud must precede the media
    for line in ("ucast eth1 10.9.0.1", "ucast eth1 10.9.0.2", "serial /dev/ttyS1", "baud 115200",
                 "keepalive 500ms", "deadtime 3"):
        assert line in ha
    hares = files["etc/ha.d/haresources"].content.decode()
    assert "LVSVip::192.168.1.106/24/eth0/192.168.1.255" in hares
    mods = files["etc/modules-load.d/lvs-director.conf"].content.decode().split()
    assert "ip_vs_mh" in mods
    unit = rendered(Role.REALSERVER, reference)["usr/lib/systemd/system/lvs-realserver.service"].content.decode()
    assert "ExecStart=ip address replace 192.168.1.106/32 dev tunl0" in unit


def test_templates_are_strict() -> None:
    env = render.environment()
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ nope }}").render()


# ---------------------------------------------------------------------------
# `lvs-builder render`: dry run, diff, staged write.


def test_render_dry_run_writes_nothing_then_write_then_diff(tmp_path: Path) -> None:
    out = tmp_path / "node"
    r = CliRunner().invoke(cli, ["render", "realserver", "--out", str(out), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "would write new" in r.output and not out.exists()
    r = CliRunner().invoke(cli, ["render", "realserver", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "usr/share/lvs-realserver/www/ldirector.html").read_text() == "Test Page\n"
    assert [p.name for p in tmp_path.iterdir()] == ["node"]  # no staging dir left behind
    r = CliRunner().invoke(cli, ["render", "realserver", "--out", str(out), "--dry-run"])
    node_files = [p for p in rendered(Role.REALSERVER) if not p.startswith("DEBIAN/")]
    assert f"0 changed, {len(node_files)} unchanged (dry run)" in r.output.splitlines()
    (out / "etc/sysctl.d/60-lvs-realserver.conf").write_text("edited\n")
    r = CliRunner().invoke(cli, ["render", "realserver", "--out", str(out), "--dry-run", "--diff"])
    assert "would write changed etc/sysctl.d/60-lvs-realserver.conf" in r.output
    assert "-edited" in r.output and "+net.ipv4.conf.all.arp_ignore = 1" in r.output


def test_render_cluster_key_reads_the_key_keygen_made_beside_the_spec(tmp_path: Path,
                                                                      reference: dict[str, Any]) -> None:
    p = write_spec(tmp_path, reference)
    out1, out2 = tmp_path / "a", tmp_path / "b"
    r = CliRunner().invoke(cli, ["render", "cluster-key", "--spec", str(p), "--out", str(out1)])
    key_file = tmp_path / "cluster.authkey"
    assert r.exit_code == 1
    assert r.output.startswith(
        f"error: {key_file}: no cluster key; create it once with: lvs-builder keygen --spec {p} ")
    assert not key_file.exists() and not out1.exists()
    # The director's own files need no key: they render without one.
    r = CliRunner().invoke(cli, ["render", "director", "--spec", str(p), "--out", str(tmp_path / "d")])
    assert r.exit_code == 0 and not (tmp_path / "d/etc/ha.d/authkeys").exists(), r.output
    assert CliRunner().invoke(cli, ["keygen", "--spec", str(p)]).exit_code == 0
    assert CliRunner().invoke(cli, ["render", "cluster-key", "--spec", str(p), "--out", str(out1)]).exit_code == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ring = authkey.read(key_file)
    assert re.fullmatch(r"[0-9a-f]{64}", ring.signing) and ring.serial == 1
    assert CliRunner().invoke(cli, ["render", "cluster-key", "--spec", str(p), "--out", str(out2)]).exit_code == 0
    assert (out1 / "etc/ha.d/authkeys").read_bytes() == (out2 / "etc/ha.d/authkeys").read_bytes()
    assert ring.signing in (out1 / "etc/ha.d/authkeys").read_text()
    assert stat.S_IMODE((out1 / "etc/ha.d/authkeys").stat().st_mode) == 0o600


def test_a_world_readable_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("a" * 64 + "\n")
    key.chmod(0o644)
    r = CliRunner().invoke(cli, ["render", "cluster-key", "--out", str(tmp_path / "o"), "--authkey-file", str(key)])
    assert r.exit_code == 1
    assert r.output == f"error: {key}: the cluster key is readable by others (mode 0644); chmod 600 {key}\n"
    assert not (tmp_path / "o").exists()


def test_the_two_paths_example_has_a_serial_link_and_a_ping_node_and_no_warning() -> None:
    """docs/examples/two-paths.yaml: the reference cluster with the second heartbeat path its
    directors' serial ports are for (ttyS1: ttyS0 is the console) and ipfail's ping node."""
    c, warnings = spec.load(REPO / "docs" / "examples" / "two-paths.yaml")
    assert warnings == []
    assert c.heartbeat_paths == ("eth0", "serial /dev/ttyS1")
    ha = render.render(c, Role.DIRECTOR, None, epoch=deb.DEFAULT_EPOCH)["etc/ha.d/ha.cf"].content.decode().splitlines()
    assert ha.index("baud 115200") < ha.index("serial /dev/ttyS1")
    assert "ping 192.168.1.1" in ha and "respawn hacluster /usr/libexec/heartbeat/ipfail" in ha
    # the same cluster: its real servers' package is the reference's, byte for byte
    ref, _ = spec.load(None)
    assert render.render(c, Role.REALSERVER, None, epoch=0) == render.render(ref, Role.REALSERVER, None, epoch=0)
