"""Cross-checks of a loaded spec: mistakes that today surface only at daemon start or in
production. Each is one Problem naming its path in the spec (`virtual_services[0].scheduler`);
warnings are returned, errors collected.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from .checking import _FACILITY_RE, _IFACE_RE, Collector, _port, _positive
from .errors import Problem
from .heartbeat_checks import _check_heartbeat
from .model import (
    CheckType,
    Cluster,
    DhcpMode,
    Forwarding,
    Protocol,
    Provisioning,
    RealRef,
    VirtualService,
)

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                      r"(:[0-9]{1,5})?")  # an HTTP Host: header
_QUOTED_RE = re.compile(r'[^"\\]*')  # what ldirectord.cf holds between double quotes
_EMAIL_RE = re.compile(r'[^"\\\s@]*@[^"\\\s]*')  # ldirectord's emailalert: quoted, no spaces
_CHECK_SERVICES = (
    "dns", "ftp", "http", "https", "http_proxy", "imap", "imaps", "ldap", "mysql", "nntp",
    "none", "oracle", "pgsql", "pop", "pops", "radius", "simpletcp", "sip", "smtp", "submission",
)


_LIMITED_BROADCAST = IPv4Address("255.255.255.255")


def _unusable(a: IPv4Address, subnet: IPv4Network | None, gateway: IPv4Address | None, *,
              loopback_ok: bool = False, gateway_ok: bool = False) -> str | None:
    """Why address `a` cannot be a host's (a node, a VIP, a fallback, a ping node), or None."""
    if a.is_unspecified:
        return "the unspecified address"
    if a == _LIMITED_BROADCAST:
        return "the limited broadcast address"
    if a.is_multicast:
        return "a multicast address"
    if a.is_loopback and not loopback_ok:
        return "a loopback address (this machine itself, on every node)"
    if a.is_reserved:
        return "a reserved address (240.0.0.0/4)"
    if subnet is not None and subnet.prefixlen < 31 and a in (subnet.network_address, subnet.broadcast_address):
        which = "network" if a == subnet.network_address else "broadcast"
        return f"the {which} address of {subnet}"
    if gateway is not None and a == gateway and not gateway_ok:
        return "the gateway's address (network.gateway)"
    return None


def _check_addresses(m: Cluster, c: Collector, subnet: IPv4Network | None) -> None:
    gw = m.network.gateway
    places: list[tuple[str, IPv4Address, dict[str, bool]]] = [
        *((f"{g}[{i}].address", n.address, {}) for g in ("directors", "real_servers")
          for i, n in enumerate(getattr(m, g))),
        *((f"virtual_services[{i}].address", vs.address, {}) for i, vs in enumerate(m.virtual_services)),
        *((f"virtual_services[{i}].fallback.address", vs.fallback.address, {"loopback_ok": True})
          for i, vs in enumerate(m.virtual_services) if vs.fallback is not None),
        *((f"heartbeat.ping_nodes[{i}]", a, {"gateway_ok": True}) for i, a in enumerate(m.heartbeat.ping_nodes)),
    ]
    if gw is not None:
        places.append(("network.gateway", gw, {"gateway_ok": True}))
    for path, a, opts in places:
        why = _unusable(a, subnet, gw, **opts)
        if why is not None:
            c.add(path, f"{a} is {why}; it cannot be used here")


def cross_check(m: Cluster, c: Collector, allow_weak_auth: bool) -> list[Problem]:
    warnings: list[Problem] = []

    if not _NAME_RE.fullmatch(m.name):
        c.add("name", f"{m.name!r} is not a valid cluster name (lower-case letters, digits, '-')")

    v = m.package.version
    if not re.fullmatch(r"^[0-9][A-Za-z0-9.+~]*$", v):
        c.add("package.version", f"{v!r} is not a Debian native version (digits first, then [A-Za-z0-9.+~])")

    if not re.fullmatch(r"^[^<>]*[^<>\s] <[^@<>\s]+@[^@<>\s]+\.[^@<>\s]+>$", m.package.maintainer):
        c.add("package.maintainer", f"{m.package.maintainer!r} is not 'Full Name <address@domain>'")

    if not _IFACE_RE.fullmatch(m.network.interface):
        c.add("network.interface", f"{m.network.interface!r} is not an interface name")
    if not 8 <= m.network.prefix <= 30:
        c.add("network.prefix", f"/{m.network.prefix} leaves no room for a cluster (8-30)")
        return warnings  # every address check below needs the subnet

    # Directors: heartbeat v1 resources are active/passive between exactly two nodes.
    if len(m.directors) != 2:
        c.add("directors", f"exactly two directors are needed (heartbeat active/passive), got {len(m.directors)}")
    if not m.real_servers:
        c.add("real_servers", "at least one real server is needed")

    owners: dict[IPv4Address, str] = {}
    names: dict[str, str] = {}
    macs: dict[str, str] = {}
    for group in ("directors", "real_servers"):
        for i, node in enumerate(getattr(m, group)):
            p = f"{group}[{i}]"
            if not _NAME_RE.fullmatch(node.name):
                c.add(f"{p}.name", f"{node.name!r} is not a valid host name (lower-case letters, digits, '-')")
            elif node.name in names:
                c.add(f"{p}.name", f"{node.name!r} is already the name of {names[node.name]}")
            else:
                names[node.name] = p
            if node.address in owners:
                c.add(f"{p}.address", f"{node.address} is already the address of {owners[node.address]}")
            else:
                owners[node.address] = p
            if node.mac is not None:
                mac = node.mac.lower()
                if not _MAC_RE.fullmatch(mac):
                    c.add(f"{p}.mac", f"{node.mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
                elif mac == "00:00:00:00:00:00":
                    c.add(f"{p}.mac", f"{node.mac!r} is no NIC's MAC (the loopback's)")
                elif int(mac[:2], 16) & 1:
                    c.add(f"{p}.mac", f"{node.mac!r} is a multicast MAC; a NIC needs a unicast one")
                elif mac in macs:
                    c.add(f"{p}.mac", f"{node.mac!r} is already the MAC of {macs[mac]}")
                else:
                    macs[mac] = p
            if node.interface is not None and not _IFACE_RE.fullmatch(node.interface):
                c.add(f"{p}.interface", f"{node.interface!r} is not an interface name")

    subnet = m.subnet if m.directors else None
    if subnet is not None:
        for i, d in enumerate(m.directors):
            if d.address not in subnet:
                c.add(f"directors[{i}].address", f"{d.address} is not on the directors' subnet {subnet}")
        if m.network.broadcast is not None and m.network.broadcast != subnet.broadcast_address:
            c.add("network.broadcast", f"{m.network.broadcast} is not the broadcast address of {subnet} "
                  f"({subnet.broadcast_address})")
        if m.network.gateway is not None and m.network.gateway not in subnet:
            c.add("network.gateway", f"{m.network.gateway} is not on the directors' subnet {subnet}")
    _check_addresses(m, c, subnet)

    # Virtual services.
    if not m.virtual_services:
        c.add("virtual_services", "at least one virtual service is needed")
    real_names = {n.name for n in m.real_servers}
    seen_vs: dict[tuple[Any, ...], str] = {}
    for i, vs in enumerate(m.virtual_services):
        p = f"virtual_services[{i}]"
        if vs.address in owners:
            c.add(f"{p}.address", f"{vs.address} is {owners[vs.address]}'s address; the VIP needs one of its own")
        if subnet is not None and vs.address not in subnet:
            c.add(f"{p}.address", f"{vs.address} is not on the directors' subnet {subnet}; "
                  "heartbeat brings the VIP up on that interface")
        if vs.protocol is Protocol.FWM:
            if vs.fwmark is None:
                c.add(f"{p}.fwmark", "required when protocol is fwm")
            elif not 1 <= vs.fwmark <= 0xFFFFFFFF:
                c.add(f"{p}.fwmark", f"{vs.fwmark} is not a firewall mark (1-4294967295)")
            if vs.port is not None:
                c.add(f"{p}.port", "a fwm service matches a firewall mark, not a port; remove it")
            key: tuple[Any, ...] = ("fwm", vs.fwmark)
        else:
            if vs.fwmark is not None:
                c.add(f"{p}.fwmark", f"only for protocol fwm, not {vs.protocol.value}")
            if vs.port is None:
                c.add(f"{p}.port", f"required when protocol is {vs.protocol.value}")
            _port(c, f"{p}.port", vs.port)
            key = (vs.address, vs.port, vs.protocol)
        if key in seen_vs:
            c.add(p, f"the same virtual service as {seen_vs[key]}")
        else:
            seen_vs[key] = p
        if vs.persistent is not None and vs.persistent <= 0:
            c.add(f"{p}.persistent", f"must be a number of seconds greater than 0, got {vs.persistent}")
        if vs.netmask is not None:
            if vs.persistent is None:
                c.add(f"{p}.netmask", "only meaningful with persistent")
            else:
                try:
                    IPv4Network(f"0.0.0.0/{vs.netmask}")
                except ValueError:
                    c.add(f"{p}.netmask", f"{vs.netmask} is not a netmask")
        if vs.reals is not None and not vs.reals:
            c.add(f"{p}.reals", "empty; leave it out to use every real server")
        for j, r in enumerate(vs.reals or ()):
            rp = f"{p}.reals[{j}]"
            if r.server not in real_names:
                c.add(f"{rp}.server", f"{r.server!r} is not one of real_servers ({', '.join(sorted(real_names))})")
            _port(c, f"{rp}.port", r.port)
            if not 0 <= r.weight <= 65535:
                c.add(f"{rp}.weight", f"{r.weight} is not a weight (0-65535)")
            if (vs.forwarding is not Forwarding.MASQ and r.port is not None and vs.port is not None
                    and r.port != vs.port):
                c.add(f"{rp}.port", f"{r.port} differs from the virtual port {vs.port}; "
                      f"forwarding '{vs.forwarding.value}' cannot change the port (use masq)")
        if vs.forwarding is Forwarding.GATE and subnet is not None:
            refs = vs.reals if vs.reals is not None else tuple(RealRef(n.name) for n in m.real_servers)
            by_name = {n.name: n for n in m.real_servers}
            for j, r in enumerate(refs):
                node = by_name.get(r.server)
                if node is not None and node.address not in subnet:
                    where = f"{p}.reals[{j}]" if vs.reals is not None else f"real_servers[{j}].address"
                    c.add(where, f"{node.address} is not on the directors' subnet {subnet}; "
                          "forwarding 'gate' (direct routing) needs one L2 segment")
        if vs.fallback is None:
            warnings.append(Problem(f"{p}.fallback", "none: with every real server down nothing answers "
                                    "(the tutorial's fallback is 127.0.0.1:80 gate)"))
        else:
            _port(c, f"{p}.fallback.port", vs.fallback.port)
        _check_check(m, vs, c, f"{p}.check", warnings)
        if vs.emailalert is not None and not _EMAIL_RE.fullmatch(vs.emailalert):
            c.add(f"{p}.emailalert", f"{vs.emailalert!r} is not an e-mail address")

    ld = m.ldirectord
    _positive(c, "ldirectord.checkinterval", ld.checkinterval)
    _positive(c, "ldirectord.checktimeout", ld.checktimeout)
    _positive(c, "ldirectord.negotiatetimeout", ld.negotiatetimeout)
    _positive(c, "ldirectord.failurecount", ld.failurecount)
    if not _FACILITY_RE.fullmatch(ld.logfile):
        c.add("ldirectord.logfile", f"{ld.logfile!r} is neither a syslog facility nor an absolute path")
    if ld.emailalert is not None and not _EMAIL_RE.fullmatch(ld.emailalert):
        c.add("ldirectord.emailalert", f"{ld.emailalert!r} is not an e-mail address")

    _check_heartbeat(m, c, allow_weak_auth, warnings)

    if not _IFACE_RE.fullmatch(m.sync_interface):
        c.add("sync_daemon.interface", f"{m.sync_interface!r} is not an interface name")
    if not 0 <= m.sync_daemon.syncid <= 255:
        c.add("sync_daemon.syncid", f"{m.sync_daemon.syncid} is not a sync id (0-255)")

    tp = m.pages.test.path
    if tp.startswith("/") or "/" in tp or not re.fullmatch(r"^[A-Za-z0-9._-]+$", tp):
        c.add("pages.test.path", f"{tp!r} must be a plain file name such as ldirector.html")

    if m.provisioning is not None:
        _check_provisioning(m, m.provisioning, c, owners, subnet, warnings)
    if m.repository is not None:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?/", m.repository.url):
            c.add("repository.url", f"{m.repository.url!r} is not an http:// or https:// URL ending in /")
        if m.repository.key is None:
            warnings.append(Problem("repository.key", "absent: the nodes' sources entry says 'Trusted: yes' and "
                                    "apt installs whatever that URL serves; give the signing key's public half"))
    return warnings


def _check_provisioning(m: Cluster, pv: Provisioning, c: Collector, owners: dict[IPv4Address, str],
                        subnet: IPv4Network | None, warnings: list[Problem]) -> None:
    taken = dict(owners)
    for i, vs in enumerate(m.virtual_services):
        taken.setdefault(vs.address, f"virtual_services[{i}] (a VIP)")
    if m.network.gateway is not None:
        taken.setdefault(m.network.gateway, "network.gateway")
    if pv.server in taken:
        c.add("provisioning.server", f"{pv.server} is already {taken[pv.server]}; the provisioning server needs "
              "an address of its own")
    if subnet is not None and pv.server not in subnet:
        c.add("provisioning.server", f"{pv.server} is not on the nodes' subnet {subnet}: PXE needs the server on "
              "the segment the machines boot on")
    elif subnet is not None and pv.server in (subnet.network_address, subnet.broadcast_address):
        c.add("provisioning.server", f"{pv.server} is the subnet's network or broadcast address")
    if not _IFACE_RE.fullmatch(pv.interface):
        c.add("provisioning.interface", f"{pv.interface!r} is not an interface name")
    _port(c, "provisioning.http_port", pv.http_port)
    if pv.pool is not None:
        if pv.dhcp is DhcpMode.PROXY:
            c.add("provisioning.pool", "proxy mode leaves every address to the other DHCP server: drop the pool "
                  "or use dhcp: static")
        elif pv.pool.last < pv.pool.first:
            c.add("provisioning.pool", f"{pv.pool.first}-{pv.pool.last} is empty: first must not be after last")
        else:
            for key, a in (("first", pv.pool.first), ("last", pv.pool.last)):
                if subnet is not None and a not in subnet:
                    c.add(f"provisioning.pool.{key}", f"{a} is not on the nodes' subnet {subnet}")
            taken.setdefault(pv.server, "provisioning.server")
            for a, who in sorted(taken.items()):
                if pv.pool.first <= a <= pv.pool.last:
                    c.add("provisioning.pool", f"{pv.pool.first}-{pv.pool.last} includes {a}, {who}")
    missing = [n.name for n, _ in m.nodes if n.mac is None]
    if missing:
        warnings.append(Problem("provisioning", "no MAC for " + ", ".join(missing) + ": build-pxe refuses until "
                                "every node has one"))


def _check_check(m: Cluster, vs: VirtualService, c: Collector, p: str, warnings: list[Problem]) -> None:
    ck = vs.check
    if ck.virtualhost is not None and not _HOST_RE.fullmatch(ck.virtualhost):
        c.add(f"{p}.virtualhost", f"{ck.virtualhost!r} is not a host name (www.example.com[:port])")
    for name in ("request", "receive"):
        value = getattr(ck, name)
        if value is not None and not _QUOTED_RE.fullmatch(value):
            c.add(f"{p}.{name}", f"{value!r} holds a double quote or backslash, which ldirectord.cf cannot quote")
    if (ck.request is not None and ck.service in ("http", "https")
            and ck.request.lstrip("/") != m.pages.test.path):
        warnings.append(Problem(f"{p}.request", f"{ck.request!r}: no page lvs-realserver ships (it ships "
                                f"/{m.pages.test.path}); the check passes only where the real servers' own web "
                                "server serves it"))
    for name in ("interval", "timeout", "negotiatetimeout", "failurecount"):
        _positive(c, f"{p}.{name}", getattr(ck, name))
    _port(c, f"{p}.port", ck.port)
    if ck.service is not None and ck.service not in _CHECK_SERVICES:
        c.add(f"{p}.service", f"{ck.service!r} is not an ldirectord service ({', '.join(_CHECK_SERVICES)})")
    if ck.type is CheckType.NEGOTIATE:
        if ck.service is None:
            c.add(f"{p}.service", "required for checktype negotiate")
        if ck.service in ("http", "https") and ck.request is None:
            c.add(f"{p}.request", f"required for checktype negotiate with service {ck.service}")
        if ck.service in ("http", "https") and ck.receive is None:
            c.add(f"{p}.receive", f"required for checktype negotiate with service {ck.service}")
    elif ck.type is CheckType.EXTERNAL:
        if ck.command is None:
            c.add(f"{p}.command", "required for checktype external")
        elif not ck.command.startswith("/"):
            c.add(f"{p}.command", f"{ck.command!r} must be an absolute path")
    if ck.command is not None and ck.type is not CheckType.EXTERNAL:
        c.add(f"{p}.command", f"only for checktype external, not {ck.type.value}")
    if ck.request is not None and ck.request.lstrip("/") == m.pages.test.path and ck.receive is not None:
        if ck.receive not in m.pages.test.content:
            c.add(f"{p}.receive", f"{ck.receive!r} is not in the test page we ship "
                  f"(pages.test.content is {m.pages.test.content!r}); every real server would fail its check")
    timeout = ck.timeout or m.ldirectord.checktimeout
    if ck.negotiatetimeout is not None and ck.negotiatetimeout > timeout:
        c.add(f"{p}.negotiatetimeout", f"{ck.negotiatetimeout} exceeds checktimeout {timeout}")
