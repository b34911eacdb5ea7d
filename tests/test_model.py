from __future__ import annotations

import copy
import os
from ipaddress import IPv4Address
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder import loading, model, spec
from builder.errors import SpecError
from builder.model import CheckType, Forwarding, MediaType, Protocol, Release, Scheduler


def test_reference_is_the_tutorial_cluster() -> None:
    c, warnings = spec.load(None)
    # the tutorial's design, said as it is: one heartbeat path (bcast and mcast on eth0), and
    # ipfail respawned with no ping node to judge by
    assert [w.path for w in warnings] == ["heartbeat.media", "heartbeat.respawn[0]"]
    assert c.release is Release.TRIXIE
    assert [(d.name, str(d.address)) for d in c.directors] == [("loadb1", "192.168.1.103"),
                                                              ("loadb2", "192.168.1.104")]
    assert [str(r.address) for r in c.real_servers] == ["192.168.1.101", "192.168.1.102"]
    assert (c.network.interface, c.network.prefix, str(c.broadcast)) == ("eth0", 24, "192.168.1.255")
    vs = c.virtual_services[0]
    assert (str(vs.address), vs.port, vs.protocol, vs.scheduler, vs.forwarding) == (
        "192.168.1.105", 80, Protocol.TCP, Scheduler.RR, Forwarding.GATE)
    assert [(n.name, port, weight) for n, port, weight in c.reals_of(vs)] == [
        ("webserver1", 80, 1), ("webserver2", 80, 1)]
    assert vs.fallback == model.Fallback(IPv4Address("127.0.0.1"), 80, Forwarding.GATE)
    assert (vs.check.type, vs.check.service, vs.check.request, vs.check.receive) == (
        CheckType.NEGOTIATE, "http", "ldirector.html", "Test Page")
    ld = c.ldirectord
    assert (ld.checkinterval, ld.checktimeout, ld.quiescent, ld.autoreload, ld.logfile) == (2, 10, True, False,
                                                                                          "local0")
    hb = c.heartbeat
    assert [m.type for m in hb.media] == [MediaType.BCAST, MediaType.MCAST]
    assert hb.auto_failback is False
    t = hb.timing
    assert t.deadtime > 2 * t.keepalive and t.initdead >= max(t.deadtime, 10)


def test_round_trip_model_to_yaml_to_model() -> None:
    c, _ = spec.load(None)
    again, _ = loading.load(yaml.safe_load(yaml.safe_dump(model.to_data(c))))
    assert again == c


def test_defaults_fill_a_minimal_spec() -> None:
    minimal = {
        "name": "mini",
        "directors": [{"name": "a", "address": "10.0.0.1"}, {"name": "b", "address": "10.0.0.2"}],
        "real_servers": [{"name": "w", "address": "10.0.0.3"}],
        "virtual_services": [{"address": "10.0.0.10", "port": 443, "fallback": {"address": "127.0.0.1"},
                              "check": {"type": "connect"}}],
        "heartbeat": {"media": [{"type": "ucast"}]},
    }
    c, warnings = loading.load(minimal)
    assert [w.path for w in warnings] == ["heartbeat.media"]  # one path: ucast on eth0
    assert c.virtual_services[0].scheduler is Scheduler.WLC  # ldirectord's own default
    assert c.reals_of(c.virtual_services[0])[0][1] == 443


def test_unquoted_mac_and_on_off_survive_yaml() -> None:
    text = spec.reference_text().replace('mac: "52:54:00:00:01:03"', "mac: 52:54:00:00:01:03")
    text = text.replace("type: negotiate", "type: on")
    data = spec.parse(text)
    assert data["directors"][0]["mac"] == "52:54:00:00:01:03"
    c, _ = loading.load(data)
    assert c.virtual_services[0].check.type is CheckType.ON


# ---------------------------------------------------------------------------
# Random mutations of a valid spec never produce anything but SpecError.

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 70000), st.integers(-2**40, 2**40), st.floats(), st.text(max_size=12),
    st.sampled_from(["rr", "gate", "fwm", "serial", "192.168.1.105", "0.0.0.0", "255.255.255.255",
                     "/dev/ttyS0", "52:54:00:00:01:01", "on", "", "eth0"]),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(spec.parse(spec.reference_text()))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = data
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JUNK)
        else:
            parent[path[-1]] = draw(JUNK)
    return data


@settings(max_examples=int(os.environ.get("LVS_FUZZ_EXAMPLES", "400")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_random_mutations_never_traceback(data: Any) -> None:
    try:
        loading.load(data)
    except SpecError as e:
        assert e.problems and all(str(p) for p in e.problems)
