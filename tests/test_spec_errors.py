"""Bad specs, each with the exact line it must produce, and nothing written anywhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import loading, model
from builder.cli import cli
from builder.errors import SpecError

from .conftest import write_spec

DELETE = object()


def apply(data: dict[str, Any], path: str, value: Any) -> None:
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    target: Any = data
    for p in parts[:-1]:
        target = target[p]
    if value is DELETE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value


S = "virtual_services[0]"
# What the reference spec itself is warned of: the tutorial's one heartbeat path, ipfail without ping nodes.
ONE_PATH = ("heartbeat.media", "heartbeat.respawn[0]")


def other_warnings(warnings: list[Any]) -> list[str]:
    return [str(w) for w in warnings if w.path not in ONE_PATH]
# (mutations, the exact error line). Every line names the path of the problem.
BAD: list[tuple[dict[str, Any], str]] = [
    ({f"{S}.scheduler": "rrr"},
     f"{S}.scheduler: 'rrr' is not an IPVS scheduler (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, "
     "ovf, twos)"),
    ({f"{S}.schedular": "rr"}, f"{S}.schedular: unknown key; did you mean 'scheduler'?"),
    ({"virtual_service": []}, "virtual_service: unknown key; did you mean 'virtual_services'?"),
    ({f"{S}.forwarding": "dr"}, f"{S}.forwarding: 'dr' is not a forwarding method (gate, masq, ipip)"),
    ({f"{S}.protocol": "sctp"}, f"{S}.protocol: 'sctp' is not a protocol (tcp, udp, fwm)"),
    ({f"{S}.check.type": "http"},
     f"{S}.check.type: 'http' is not an ldirectord checktype (negotiate, connect, external, ping, on, off)"),
    ({"release": "buster"}, "release: 'buster' is not a supported Debian release (trixie, bookworm)"),
    ({"directors": [{"name": "loadb1", "address": "192.168.1.103"}]},
     "directors: exactly two directors are needed (heartbeat active/passive), got 1"),
    ({"directors[1].name": "loadb1"}, "directors[1].name: 'loadb1' is already the name of directors[0]"),
    ({"real_servers[0].name": "loadb2"}, "real_servers[0].name: 'loadb2' is already the name of directors[1]"),
    ({"directors[1].address": "192.168.1.103"},
     "directors[1].address: 192.168.1.103 is already the address of directors[0]"),
    ({"real_servers[1].address": "192.168.1.101"},
     "real_servers[1].address: 192.168.1.101 is already the address of real_servers[0]"),
    ({f"{S}.address": "192.168.1.104"},
     f"{S}.address: 192.168.1.104 is directors[1]'s address; the VIP needs one of its own"),
    ({f"{S}.address": "192.168.7.105"},
     f"{S}.address: 192.168.7.105 is not on the directors' subnet 192.168.1.0/24; "
     "heartbeat brings the VIP up on that interface"),
    ({"real_servers[1].address": "10.0.0.102"},
     f"{S}.reals[1]: 10.0.0.102 is not on the directors' subnet 192.168.1.0/24; "
     "forwarding 'gate' (direct routing) needs one L2 segment"),
    ({"directors[0].address": "192.168.1.300"}, "directors[0].address: '192.168.1.300' is not an IPv4 address"),
    ({f"{S}.port": 70000}, f"{S}.port: 70000 is not a port (1-65535)"),
    ({f"{S}.port": "http"}, f"{S}.port: expected a whole number, got 'http'"),
    ({f"{S}.reals[0].port": 8080},
     f"{S}.reals[0].port: 8080 differs from the virtual port 80; forwarding 'gate' cannot change the port "
     "(use masq)"),
    ({f"{S}.reals[0].server": "web9"}, f"{S}.reals[0].server: 'web9' is not one of real_servers "
     "(webserver1, webserver2)"),
    ({f"{S}.reals[1].weight": -1}, f"{S}.reals[1].weight: -1 is not a weight (0-65535)"),
    ({f"{S}.check.receive": "It works"},
     f"{S}.check.receive: 'It works' is not in the test page we ship (pages.test.content is 'Test Page'); "
     "every real server would fail its check"),
    ({f"{S}.check.request": DELETE}, f"{S}.check.request: required for checktype negotiate with service http"),
    ({f"{S}.check.type": "external"}, f"{S}.check.command: required for checktype external"),
    ({"heartbeat.timing.deadtime": 1, "heartbeat.timing.warntime": 0.75},
     "heartbeat.timing.deadtime: 1 s must be more than twice keepalive (0.5 s)"),
    ({"heartbeat.timing.initdead": 8},
     "heartbeat.timing.initdead: 8 s must be at least deadtime (2.5 s) and at least 10 s "
     "(links come up slowly at boot)"),
    ({"heartbeat.timing.warntime": 4},
     "heartbeat.timing.warntime: 4 s must lie between keepalive (0.5 s) and deadtime (2.5 s)"),
    ({"heartbeat.timing.initdead": 1.8e305},  # found by the fuzz: * 1000 overflowed to infinity
     "heartbeat.timing.initdead: 1.8e+305 s is more than 3600 s: a cluster that waits an hour to act is no "
     "high-availability cluster"),
    ({"heartbeat.timing.keepalive": 0.0005},
     "heartbeat.timing.keepalive: 0.0005 s is finer than the millisecond heartbeat counts in"),
    ({"heartbeat.media[0]": {"type": "serial", "device": "/tmp/ttyS0"}},
     "heartbeat.media[0].device: '/tmp/ttyS0' is not a serial device (/dev/ttyS1, /dev/ttyUSB0, ...)"),
    ({"heartbeat.media[0]": {"type": "serial", "device": "/dev/ttyS0"}},
     "heartbeat.media[0].device: /dev/ttyS0 is the nodes' serial console (the images boot with console=ttyS0): "
     "heartbeat and the console would share one line; connect the null-modem cable to the second port, /dev/ttyS1"),
    ({"heartbeat.media[0]": {"type": "serial"}}, "heartbeat.media[0].device: required for a serial medium"),
    ({"heartbeat.media[0]": {"type": "ucast", "interface": "eth1"}},
     "heartbeat.media[0].addresses: required for ucast on eth1, which is not the directors' cluster interface: "
     "each director's address on that link, in the directors' order"),
    ({"heartbeat.media[0]": {"type": "ucast", "interface": "eth1", "addresses": ["10.9.0.1"]}},
     "heartbeat.media[0].addresses: 1 given: one per director (2), in their order"),
    ({"heartbeat.media[0]": {"type": "ucast", "interface": "eth1", "addresses": ["192.168.1.1", "192.168.1.2"]}},
     "heartbeat.media[0].addresses: 192.168.1.0/24 overlaps the cluster's subnet 192.168.1.0/24: a second path "
     "needs a subnet of its own"),
    ({"heartbeat.media[0]": {"type": "ucast", "interface": "eth1", "addresses": ["10.9.0.1", "10.9.1.1"],
                             "prefix": 24}},
     "heartbeat.media[0].addresses: 10.9.0.1, 10.9.1.1 are not on one /24 link"),
    ({"heartbeat.media[0]": {"type": "ucast", "interface": "eth0", "addresses": ["10.9.0.1", "10.9.0.2"]}},
     "heartbeat.media[0].interface: eth0 is the directors' cluster interface: addresses are for ucast on a link of "
     "their own (a second NIC); leave them out to use the directors' addresses"),
    ({"heartbeat.media[1].addresses": ["10.9.0.1", "10.9.0.2"]},
     "heartbeat.media[1].addresses: only for a ucast medium, not mcast"),
    ({"heartbeat.media[1].group": "192.168.1.200"},
     "heartbeat.media[1].group: 192.168.1.200 is not a multicast address (224.0.0.0/4)"),
    ({"heartbeat.media[0].type": "usb"}, "heartbeat.media[0].type: 'usb' is not a heartbeat medium "
     "(bcast, mcast, ucast, serial)"),
    ({"heartbeat.media": []}, "heartbeat.media: at least one heartbeat medium is needed"),
    ({"heartbeat.auth": "md5"}, "heartbeat.auth: md5 is weak; use sha1, or pass --allow-weak-auth to accept it"),
    ({"heartbeat.respawn[0].command": "/usr/lib/heartbeat/ipfail"},
     "heartbeat.respawn[0].command: /usr/lib/heartbeat/ipfail does not exist in Debian's heartbeat 3.0.6; "
     "use /usr/libexec/heartbeat/ipfail"),
    ({"heartbeat.ping_nodes": ["192.168.1.101"]},
     "heartbeat.ping_nodes[0]: 192.168.1.101 is a cluster address; ping nodes must be outside the cluster "
     "(a router), or ipfail learns nothing"),
    ({"heartbeat.auto_failback": "maybe"}, "heartbeat.auto_failback: expected yes or no, got 'maybe'"),
    ({"directors[0].mac": "52:54:00:00:01"}, "directors[0].mac: '52:54:00:00:01' is not a MAC address "
     "(aa:bb:cc:dd:ee:ff)"),
    ({"directors[1].mac": "52:54:00:00:01:03"},
     "directors[1].mac: '52:54:00:00:01:03' is already the MAC of directors[0]"),
    ({"heartbeat.respawn[0].user": "hacluster node"},
     "heartbeat.respawn[0].user: 'hacluster node' is not a user name (hacluster)"),
    ({"heartbeat.apiauth[0].client": "ipfail uid=root"},
     "heartbeat.apiauth[0].client: 'ipfail uid=root' is not an apiauth client name (ipfail, default)"),
    ({"heartbeat.apiauth[0].gid": "haclient uid=root"},
     "heartbeat.apiauth[0].gid: 'haclient uid=root' is not a group name or a comma-separated list of them"),
    ({"virtual_services[0].check.virtualhost": "www.example.com real=evil"},
     "virtual_services[0].check.virtualhost: 'www.example.com real=evil' is not a host name "
     "(www.example.com[:port])"),
    ({"virtual_services[0].check.receive": 'Test" x="'},
     "virtual_services[0].check.receive: 'Test\" x=\"' holds a double quote or backslash, which ldirectord.cf "
     "cannot quote"),
    ({"real_servers[0].mac": "00:00:00:00:00:00"},
     "real_servers[0].mac: '00:00:00:00:00:00' is no NIC's MAC (the loopback's)"),
    ({"virtual_services[0].address": "192.168.1.255"},
     "virtual_services[0].address: 192.168.1.255 is the broadcast address of 192.168.1.0/24; it cannot be used here"),
    ({"real_servers[1].address": "192.168.1.0"},
     "real_servers[1].address: 192.168.1.0 is the network address of 192.168.1.0/24; it cannot be used here"),
    ({"network.gateway": "192.168.1.1", "virtual_services[0].address": "192.168.1.1"},
     "virtual_services[0].address: 192.168.1.1 is the gateway's address (network.gateway); it cannot be used here"),
    ({"real_servers[0].address": "127.0.0.5"},
     "real_servers[0].address: 127.0.0.5 is a loopback address (this machine itself, on every node); "
     "it cannot be used here"),
    ({"virtual_services[0].fallback.address": "224.0.0.1"},
     "virtual_services[0].fallback.address: 224.0.0.1 is a multicast address; it cannot be used here"),
    ({"heartbeat.ping_nodes": ["0.0.0.0"]},
     "heartbeat.ping_nodes[0]: 0.0.0.0 is the unspecified address; it cannot be used here"),
    ({"heartbeat.ping_nodes": ["240.0.0.9"]},
     "heartbeat.ping_nodes[0]: 240.0.0.9 is a reserved address (240.0.0.0/4); it cannot be used here"),
    ({"real_servers[0].mac": "01:00:5e:00:00:01"},
     "real_servers[0].mac: '01:00:5e:00:00:01' is a multicast MAC; a NIC needs a unicast one"),
    ({"network.broadcast": "192.168.1.254"},
     "network.broadcast: 192.168.1.254 is not the broadcast address of 192.168.1.0/24 (192.168.1.255)"),
    ({"network.interface": "eth0 eth1"}, "network.interface: 'eth0 eth1' is not an interface name"),
    ({f"{S}.protocol": "fwm"}, f"{S}.fwmark: required when protocol is fwm"),
    ({f"{S}.netmask": "255.255.255.0"}, f"{S}.netmask: only meaningful with persistent"),
    ({"virtual_services": [{"address": "192.168.1.105", "port": 80}, {"address": "192.168.1.105", "port": 80}]},
     "virtual_services[1]: the same virtual service as virtual_services[0]"),
    ({"package.version": "1.0-1"},
     "package.version: '1.0-1' is not a Debian native version (digits first, then [A-Za-z0-9.+~])"),
    ({"package.maintainer": "root"},
     "package.maintainer: 'root' is not 'Full Name <address@domain>'"),
    ({"ldirectord.checkinterval": 0}, "ldirectord.checkinterval: must be greater than 0, got 0"),
    ({"pages.test.path": "/var/www/ldirector.html"},
     "pages.test.path: '/var/www/ldirector.html' must be a plain file name such as ldirector.html"),
    ({"heartbeat": DELETE}, "heartbeat: required"),
    ({"name": "Reference Cluster"},
     "name: 'Reference Cluster' is not a valid cluster name (lower-case letters, digits, '-')"),
    ({"sync_daemon.syncid": 300}, "sync_daemon.syncid: 300 is not a sync id (0-255)"),
    ({"provisioning.server": "192.168.1.105"},
     "provisioning.server: 192.168.1.105 is already virtual_services[0] (a VIP); the provisioning server needs "
     "an address of its own"),
    ({"provisioning.server": "10.0.0.10"},
     "provisioning.server: 10.0.0.10 is not on the nodes' subnet 192.168.1.0/24: PXE needs the server on the "
     "segment the machines boot on"),
    ({"provisioning.dhcp": "relay"}, "provisioning.dhcp: 'relay' is not a DHCP mode (static, proxy)"),
    ({"images": {"firmware": "uefi"}}, "images.firmware: 'uefi' is not an image firmware (hybrid, bios)"),
    ({"repository": {"url": "ftp://192.168.1.10/", "key": "repo-key.asc"}},
     "repository.url: 'ftp://192.168.1.10/' is not an http:// or https:// URL ending in /"),
    ({"repository": {"url": "http://192.168.1.10:8080", "key": "repo-key.asc"}},
     "repository.url: 'http://192.168.1.10:8080' is not an http:// or https:// URL ending in /"),
    ({"repository": {"key": "repo-key.asc"}}, "repository.url: required"),
    ({"provisioning.pool.last": "192.168.1.210", "provisioning.pool.first": "192.168.1.100"},
     "provisioning.pool: 192.168.1.100-192.168.1.210 includes 192.168.1.101, real_servers[0]"),
    ({"provisioning.pool.last": "192.168.1.199"},
     "provisioning.pool: 192.168.1.200-192.168.1.199 is empty: first must not be after last"),
    ({"provisioning.dhcp": "proxy"},
     "provisioning.pool: proxy mode leaves every address to the other DHCP server: drop the pool or use "
     "dhcp: static"),
    # No text field may hold a line break or another control character: each lands on one line
    # of some configuration file (ha.cf, ldirectord.cf, haresources, sysctl) and would add lines.
    ({"name": "reference\n"}, "name: 'reference\\n' holds a control character ('\\n'); no configuration "
     "line may have one"),
    ({"directors[0].name": "loadb1\n"}, "directors[0].name: 'loadb1\\n' holds a control character ('\\n'); "
     "no configuration line may have one"),
    ({"directors[0].mac": "52:54:00:00:01:03\n"}, "directors[0].mac: '52:54:00:00:01:03\\n' holds a control "
     "character ('\\n'); no configuration line may have one"),
    ({"package.version": "1.0\n"}, "package.version: '1.0\\n' holds a control character ('\\n'); no "
     "configuration line may have one"),
    ({"heartbeat.respawn[0].user": "hacluster\nnode evil"}, "heartbeat.respawn[0].user: 'hacluster\\nnode evil' "
     "holds a control character ('\\n'); no configuration line may have one"),
    ({f"{S}.check.virtualhost": "www.example.org\rnode evil"}, f"{S}.check.virtualhost: 'www.example.org\\rnode "
     "evil' holds a control character ('\\r'); no configuration line may have one"),
    ({"package.maintainer": "Ops\tTeam <ops@example.org>"}, "package.maintainer: 'Ops\\tTeam <ops@example.org>' "
     "holds a control character ('\\t'); no configuration line may have one"),
    ({"name": "a" * 1025}, "name: 1025 characters is longer than any field needs (at most 1024)"),
    ({"pages.fallback": "Down.\n\x1b[2J"}, "pages.fallback: 'Down.\\n\\x1b[2J' holds a control character "
     "('\\x1b'); no configuration line may have one"),
]


@pytest.mark.parametrize("mutations,expected", BAD, ids=[m[1].split(":")[0] for m in BAD])
def test_bad_spec_gives_exact_line(reference: dict[str, Any], mutations: dict[str, Any], expected: str) -> None:
    for path, value in mutations.items():
        apply(reference, path, value)
    with pytest.raises(SpecError) as err:
        loading.load(reference)
    assert expected in [str(p) for p in err.value.problems]


def test_table_is_large_enough() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize("text,expected", [
    ("", "spec: empty; `lvs-builder init` writes a starter spec"),
    ("- a\n- b\n", "spec: expected a mapping at the top level, got a list"),
    ("name: [unclosed\n", "spec: line 2, column 1: not valid YAML: expected ',' or ']', but got '<stream end>'"),
    ("name: a\nname: b\n", "spec: line 2, column 1: not valid YAML: duplicate key 'name'"),
])
def test_bad_yaml(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", "--spec", str(p)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: {expected}"]


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    result = CliRunner().invoke(cli, ["validate", "--spec", str(p)])
    assert result.exit_code == 2
    assert result.output == f"error: {p}: not UTF-8 (byte 9)\n"


def test_cli_reports_every_problem_and_writes_nothing(tmp_path: Path, reference: dict[str, Any]) -> None:
    apply(reference, f"{S}.scheduler", "rrr")
    apply(reference, "directors[1].address", "192.168.1.300")
    p = write_spec(tmp_path, reference)
    before = sorted(tmp_path.rglob("*"))
    out = tmp_path / "out"
    for args in (["validate"], ["render", "director", "--out", str(out)],
                 ["build-deb", "director", "--out", str(out)]):
        result = CliRunner().invoke(cli, [*args, "--spec", str(p)])
        assert result.exit_code == 2, result.output
        lines = result.output.splitlines()
        assert all(line.startswith("error: ") for line in lines)
        assert len(lines) == 2
    assert sorted(tmp_path.rglob("*")) == before  # no key, no out dir, nothing


def test_a_page_may_have_lines(reference: dict[str, Any]) -> None:
    reference.setdefault("pages", {})["fallback"] = "Service degraded.\n\tEvery real server is down.\n"
    cluster, _ = loading.load(reference)
    assert cluster.pages.fallback.count("\n") == 2


def test_missing_fallback_is_a_warning_not_an_error(reference: dict[str, Any]) -> None:
    del reference["virtual_services"][0]["fallback"]
    _, warnings = loading.load(reference)
    assert other_warnings(warnings) == [
        f"{S}.fallback: none: with every real server down nothing answers "
        "(the tutorial's fallback is 127.0.0.1:80 gate)"]


def test_weak_auth_with_opt_in_warns(reference: dict[str, Any]) -> None:
    reference["heartbeat"]["auth"] = "md5"
    cluster, warnings = loading.load(reference, allow_weak_auth=True)
    assert cluster.heartbeat.auth is model.AuthMethod.MD5
    assert any(w.path == "heartbeat.auth" for w in warnings)


def test_a_node_without_a_mac_warns_and_cannot_be_pxe_rolled_out(reference: dict[str, Any]) -> None:
    del reference["real_servers"][1]["mac"]
    cluster, warnings = loading.load(reference)
    assert other_warnings(warnings) == [
        "provisioning: no MAC for webserver2: build-pxe refuses until every node has one"]
    assert [str(p) for p in model.pxe_problems(cluster)] == [
        "real_servers[1].mac: webserver2 has no MAC, so no PXE entry can name it: add its MAC, or roll it out "
        "from a disk image"]
    del reference["provisioning"]
    cluster, _ = loading.load(reference)
    assert [p.path for p in model.pxe_problems(cluster)] == ["provisioning", "real_servers[1].mac"]


def test_an_unsigned_repository_is_a_warning_and_ships_a_trusted_entry(reference: dict[str, Any]) -> None:
    from builder import render
    from builder.model import Extra, Role

    reference["repository"] = {"url": "http://192.168.1.10:8080/"}
    cluster, warnings = loading.load(reference)
    assert other_warnings(warnings) == [
        "repository.key: absent: the nodes' sources entry says 'Trusted: yes' and apt installs whatever that URL "
        "serves; give the signing key's public half"]
    files = render.render(cluster, Extra.APT_SOURCE, None, epoch=0)
    entry = files["etc/apt/sources.list.d/lvs-reference.sources"].content.decode()
    assert not [p for p in render.render(cluster, Role.REALSERVER, None, epoch=0) if p.startswith("etc/apt/")]
    assert "\nURIs: http://192.168.1.10:8080/\nSuites: ./\nTrusted: yes\n" in entry
    del reference["repository"]
    cluster, _ = loading.load(reference)
    assert not [p for p in render.render(cluster, Extra.APT_SOURCE, None, epoch=0) if p.startswith("etc/apt/")]


def test_a_check_of_a_page_no_real_server_ships_warns(reference: dict[str, Any]) -> None:
    apply(reference, "virtual_services[0].check.request", "/health")
    apply(reference, "virtual_services[0].check.receive", "ok")
    _, warnings = loading.load(reference)
    assert ("virtual_services[0].check.request: '/health': no page lvs-realserver ships (it ships /ldirector.html); "
            "the check passes only where the real servers' own web server serves it") in [str(w) for w in warnings]
