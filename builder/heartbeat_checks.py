"""The spec's heartbeat section checked: media (a serial line that is no console, ucast on a
link of the directors' own), timings, respawned clients and their apiauth, the key's method,
ping nodes; and the warnings a working but fragile cluster gets (one path, ipfail blind)."""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from typing import Any

from .checking import _FACILITY_RE, _IFACE_RE, Collector, _port
from .errors import Problem
from .model import CONSOLE_TTY, AuthMethod, Cluster, MediaType

_SERIAL_RE = re.compile(r"^/dev/tty[A-Za-z0-9]+$")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # a user or group name, as Debian's adduser takes it
_USERS_RE = re.compile(rf"{_USER_RE.pattern}(,{_USER_RE.pattern})*")  # heartbeat's uid=/gid= lists
_CLIENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # an apiauth client (ipfail, ccm, default)
MAX_TIMING_S = 3600  # heartbeat timings: anything longer is a typo, and * 1000 must stay finite


def _check_link(m: Cluster, c: Collector, p: str, md: Any) -> None:
    """A ucast medium on a link of the directors' own: each director's address there."""
    cluster_ifaces = {m.interface_of(d) for d in m.directors}
    iface = md.interface or m.network.interface
    if md.addresses and md.type is not MediaType.UCAST:
        c.add(f"{p}.addresses", f"only for a ucast medium, not {md.type.value}")
        return
    if md.type is not MediaType.UCAST:
        return
    if not md.addresses:
        if iface not in cluster_ifaces:
            c.add(f"{p}.addresses", f"required for ucast on {iface}, which is not the directors' cluster interface: "
                  "each director's address on that link, in the directors' order")
        return
    if iface in cluster_ifaces:
        c.add(f"{p}.interface", f"{iface} is the directors' cluster interface: addresses are for ucast on a link of "
              "their own (a second NIC); leave them out to use the directors' addresses")
        return
    if len(md.addresses) != len(m.directors):
        c.add(f"{p}.addresses", f"{len(md.addresses)} given: one per director ({len(m.directors)}), in their order")
        return
    if not 8 <= md.prefix <= 30:
        c.add(f"{p}.prefix", f"{md.prefix} is not a prefix length for a link of two directors (8-30)")
        return
    nets = {IPv4Network(f"{a}/{md.prefix}", strict=False) for a in md.addresses}
    taken = {n.address for n in m.directors + m.real_servers} | set(m.vips)
    if len(set(md.addresses)) != len(md.addresses):
        c.add(f"{p}.addresses", "each director needs an address of its own")
    elif len(nets) != 1:
        c.add(f"{p}.addresses", f"{', '.join(map(str, md.addresses))} are not on one /{md.prefix} link")
    elif (net := nets.pop()).overlaps(m.subnet):
        c.add(f"{p}.addresses", f"{net} overlaps the cluster's subnet {m.subnet}: a second path needs a subnet of "
              "its own")
    for i, a in enumerate(md.addresses):
        if a in taken:
            c.add(f"{p}.addresses[{i}]", f"{a} is a cluster address")


def _check_heartbeat(m: Cluster, c: Collector, allow_weak_auth: bool, warnings: list[Problem]) -> None:
    hb = m.heartbeat
    if not hb.media:
        c.add("heartbeat.media", "at least one heartbeat medium is needed")
    serials = 0
    for i, md in enumerate(hb.media):
        p = f"heartbeat.media[{i}]"
        if md.type is MediaType.SERIAL:
            serials += 1
            if md.device is None:
                c.add(f"{p}.device", "required for a serial medium")
            elif not _SERIAL_RE.fullmatch(md.device):
                c.add(f"{p}.device", f"{md.device!r} is not a serial device (/dev/ttyS1, /dev/ttyUSB0, ...)")
            elif md.device == f"/dev/{CONSOLE_TTY}":
                c.add(f"{p}.device", f"{md.device} is the nodes' serial console (the images boot with "
                      f"console={CONSOLE_TTY}): heartbeat and the console would share one line; connect the "
                      "null-modem cable to the second port, /dev/ttyS1")
            if md.baud not in (9600, 19200, 38400, 57600, 115200, 230400):
                c.add(f"{p}.baud", f"{md.baud} is not a baud rate heartbeat supports")
            if md.interface is not None:
                c.add(f"{p}.interface", "a serial medium has a device, not an interface")
            continue
        if md.device is not None:
            c.add(f"{p}.device", f"only for a serial medium, not {md.type.value}")
        iface = md.interface or m.network.interface
        if not _IFACE_RE.fullmatch(iface):
            c.add(f"{p}.interface", f"{iface!r} is not an interface name")
        if md.type is MediaType.MCAST:
            if md.group is None:
                c.add(f"{p}.group", "required for an mcast medium")
            elif not md.group.is_multicast:
                c.add(f"{p}.group", f"{md.group} is not a multicast address (224.0.0.0/4)")
            if not 1 <= md.ttl <= 255:
                c.add(f"{p}.ttl", f"{md.ttl} is not a TTL (1-255)")
            if md.loop not in (0, 1):
                c.add(f"{p}.loop", f"{md.loop} must be 0 or 1")
        elif md.group is not None:
            c.add(f"{p}.group", f"only for an mcast medium, not {md.type.value}")
        _port(c, f"{p}.port", md.port)
        _check_link(m, c, p, md)
    if serials > 1:
        c.add("heartbeat.media", "heartbeat drives one serial link at a time; list one serial medium")
    if len(m.heartbeat_paths) == 1 and not serials:
        warnings.append(Problem("heartbeat.media", f"every medium runs over {m.heartbeat_paths[0]} and none is serial: "
                                "one lost link or switch port splits the brain (both directors take the VIPs); "
                                "add a serial medium (a null-modem cable, /dev/ttyS1) or a ucast medium on "
                                "a second interface"))

    t = hb.timing
    for name in ("keepalive", "warntime", "deadtime", "initdead"):
        v = getattr(t, name)
        if v <= 0:
            c.add(f"heartbeat.timing.{name}", f"must be greater than 0, got {v:g}")
        elif v > MAX_TIMING_S:
            c.add(f"heartbeat.timing.{name}", f"{v:g} s is more than {MAX_TIMING_S} s: a cluster that waits an hour "
                  "to act is no high-availability cluster")
        elif round(v * 1000) != v * 1000:
            c.add(f"heartbeat.timing.{name}", f"{v:g} s is finer than the millisecond heartbeat counts in")
    if t.keepalive > 0 and t.deadtime <= 2 * t.keepalive:
        c.add("heartbeat.timing.deadtime", f"{t.deadtime:g} s must be more than twice keepalive ({t.keepalive:g} s)")
    if not t.keepalive < t.warntime < t.deadtime:
        c.add("heartbeat.timing.warntime", f"{t.warntime:g} s must lie between keepalive ({t.keepalive:g} s) "
              f"and deadtime ({t.deadtime:g} s)")
    if t.initdead < t.deadtime or t.initdead < 10:
        c.add("heartbeat.timing.initdead", f"{t.initdead:g} s must be at least deadtime ({t.deadtime:g} s) "
              "and at least 10 s (links come up slowly at boot)")

    for i, r in enumerate(hb.respawn):
        if not _USER_RE.fullmatch(r.user):
            c.add(f"heartbeat.respawn[{i}].user", f"{r.user!r} is not a user name (hacluster)")
        if not r.command.startswith("/"):
            c.add(f"heartbeat.respawn[{i}].command", f"{r.command!r} must be an absolute path")
        elif r.command.startswith("/usr/lib/heartbeat/"):
            moved = r.command.replace("/usr/lib/heartbeat/", "/usr/libexec/heartbeat/")
            c.add(f"heartbeat.respawn[{i}].command", f"{r.command} does not exist in Debian's heartbeat 3.0.6; "
                  f"use {moved}")
    for i, a in enumerate(hb.apiauth):
        if not _CLIENT_RE.fullmatch(a.client):
            c.add(f"heartbeat.apiauth[{i}].client", f"{a.client!r} is not an apiauth client name (ipfail, default)")
        for name in ("uid", "gid"):
            value = getattr(a, name)
            if value is not None and not _USERS_RE.fullmatch(value):
                c.add(f"heartbeat.apiauth[{i}].{name}", f"{value!r} is not a {'user' if name == 'uid' else 'group'} "
                      "name or a comma-separated list of them")
        if a.uid is None and a.gid is None:
            c.add(f"heartbeat.apiauth[{i}]", "needs uid or gid")
    if not _FACILITY_RE.fullmatch(hb.logfacility):
        c.add("heartbeat.logfacility", f"{hb.logfacility!r} is not a syslog facility")
    if hb.auth is not AuthMethod.SHA1:
        if not allow_weak_auth:
            c.add("heartbeat.auth", f"{hb.auth.value} is weak; use sha1, or pass --allow-weak-auth to accept it")
        else:
            warnings.append(Problem("heartbeat.auth", f"{hb.auth.value} is weak; anyone on the segment "
                                    "can forge heartbeat packets"))
    ipfail = hb.ipfail
    if ipfail is not None and not hb.ping_nodes:
        warnings.append(Problem(f"heartbeat.respawn[{ipfail}]", "ipfail is respawned but heartbeat.ping_nodes is "
                                "empty: ipfail does nothing without ping nodes (a router or another host outside "
                                "the cluster that each director should reach)"))
    addrs = {n.address for n in m.directors + m.real_servers}
    for i, ping in enumerate(hb.ping_nodes):
        if ping in addrs or ping in m.vips:
            c.add(f"heartbeat.ping_nodes[{i}]", f"{ping} is a cluster address; ping nodes must be outside the cluster "
                  "(a router), or ipfail learns nothing")
