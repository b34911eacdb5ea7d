"""The validated, frozen cluster model: the only thing downstream code reads.

`load(data)` turns the parsed YAML mapping into a `Cluster` or raises SpecError with one
Problem per mistake, each naming its path (`virtual_services[0].scheduler`). Type checks
are driven by the dataclass annotations; cross-checks live in `_cross_check`.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Optional

from .errors import Problem, SpecError


class Release(enum.Enum):
    TRIXIE = "trixie"
    BOOKWORM = "bookworm"


class Role(enum.Enum):
    DIRECTOR = "director"
    REALSERVER = "realserver"

    @property
    def package(self) -> str:
        return f"lvs-{self.value}"


class Extra(enum.Enum):
    """A package of the cluster that is no node's role."""
    APT_SOURCE = "apt-source"   # the repository's sources entry (Debian's *-apt-source convention)
    CLUSTER_KEY = "cluster-key"  # the directors' heartbeat keys (authkeys): never published

    @property
    def package(self) -> str:
        return f"lvs-{self.value}"


Kind = Role | Extra  # what build-deb builds


class Scheduler(enum.Enum):
    RR = "rr"
    WRR = "wrr"
    LC = "lc"
    WLC = "wlc"
    LBLC = "lblc"
    LBLCR = "lblcr"
    DH = "dh"
    SH = "sh"
    SED = "sed"
    NQ = "nq"
    MH = "mh"
    FO = "fo"
    OVF = "ovf"
    TWOS = "twos"


class Forwarding(enum.Enum):
    GATE = "gate"
    MASQ = "masq"
    IPIP = "ipip"


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"
    FWM = "fwm"


class CheckType(enum.Enum):
    NEGOTIATE = "negotiate"
    CONNECT = "connect"
    EXTERNAL = "external"
    PING = "ping"
    ON = "on"
    OFF = "off"


class MediaType(enum.Enum):
    BCAST = "bcast"
    MCAST = "mcast"
    UCAST = "ucast"
    SERIAL = "serial"


class AuthMethod(enum.Enum):
    SHA1 = "sha1"
    MD5 = "md5"
    CRC = "crc"


class DhcpMode(enum.Enum):
    STATIC = "static"  # dnsmasq answers DHCP: a static lease for each node's MAC (and the pool)
    PROXY = "proxy"    # another DHCP server hands out addresses; dnsmasq adds only the boot file


# How the spec names things, for messages: "an IPVS scheduler", "a forwarding method".
ENUM_NOUN = {
    Release: "a supported Debian release",
    Scheduler: "an IPVS scheduler",
    Forwarding: "a forwarding method",
    Protocol: "a protocol",
    CheckType: "an ldirectord checktype",
    MediaType: "a heartbeat medium",
    AuthMethod: "a heartbeat auth method",
    DhcpMode: "a DHCP mode",
}

# The modules the tutorial loads at boot on a director, whatever the spec uses.
TUTORIAL_IPVS_MODULES = (
    "ip_vs", "ip_vs_dh", "ip_vs_ftp", "ip_vs_lblc", "ip_vs_lblcr", "ip_vs_lc",
    "ip_vs_nq", "ip_vs_rr", "ip_vs_sed", "ip_vs_sh", "ip_vs_wlc", "ip_vs_wrr",
)


@dataclass(frozen=True)
class Package:
    version: str = "1.0"
    maintainer: str = "LVS cluster admin <lvs-admin@example.org>"


@dataclass(frozen=True)
class Network:
    interface: str = "eth0"
    prefix: int = 24
    broadcast: Optional[IPv4Address] = None
    gateway: Optional[IPv4Address] = None


@dataclass(frozen=True)
class Node:
    name: str
    address: IPv4Address
    mac: Optional[str] = None
    interface: Optional[str] = None


@dataclass(frozen=True)
class Pool:
    first: IPv4Address
    last: IPv4Address


@dataclass(frozen=True)
class Provisioning:
    """Where PXE rollouts come from: build-pxe and `lvs-builder pxe serve`."""
    server: IPv4Address                 # the provisioning server's address on the segment
    interface: str = "eth0"             # its interface there (pxe serve --interface overrides)
    dhcp: DhcpMode = DhcpMode.STATIC
    pool: Optional[Pool] = None         # static mode: leases for machines the spec does not know
    http_port: int = 80


@dataclass(frozen=True)
class Repository:
    """The apt repository the nodes upgrade from (build-repo publishes it): every role
    package carries its sources entry, so a node upgrades from it whatever installed it."""
    url: str                            # http:// or https://, ending in /
    key: Optional[str] = None           # the signing key's public half, armored (a file, relative
                                        # to the spec); absent: unsigned, `Trusted: yes`


@dataclass(frozen=True)
class Check:
    type: CheckType = CheckType.NEGOTIATE
    service: Optional[str] = None
    request: Optional[str] = None
    receive: Optional[str] = None
    virtualhost: Optional[str] = None
    command: Optional[str] = None
    port: Optional[int] = None
    interval: Optional[int] = None
    timeout: Optional[int] = None
    negotiatetimeout: Optional[int] = None
    failurecount: Optional[int] = None


@dataclass(frozen=True)
class RealRef:
    server: str
    port: Optional[int] = None
    weight: int = 1


@dataclass(frozen=True)
class Fallback:
    address: IPv4Address
    port: int = 80
    forwarding: Forwarding = Forwarding.GATE


@dataclass(frozen=True)
class VirtualService:
    address: IPv4Address
    port: Optional[int] = None
    protocol: Protocol = Protocol.TCP
    fwmark: Optional[int] = None
    scheduler: Scheduler = Scheduler.WLC
    forwarding: Forwarding = Forwarding.GATE
    persistent: Optional[int] = None
    netmask: Optional[IPv4Address] = None
    reals: Optional[tuple[RealRef, ...]] = None
    fallback: Optional[Fallback] = None
    check: Check = field(default_factory=Check)
    quiescent: Optional[bool] = None
    emailalert: Optional[str] = None


@dataclass(frozen=True)
class Ldirectord:
    checkinterval: int = 2
    checktimeout: int = 10
    negotiatetimeout: Optional[int] = None
    failurecount: Optional[int] = None
    autoreload: bool = False
    quiescent: bool = True
    logfile: str = "local0"
    emailalert: Optional[str] = None


@dataclass(frozen=True)
class Media:
    type: MediaType
    interface: Optional[str] = None
    group: Optional[IPv4Address] = None
    port: int = 694
    ttl: int = 1
    loop: int = 0
    device: Optional[str] = None
    baud: int = 19200


@dataclass(frozen=True)
class Timing:
    keepalive: float = 0.5
    warntime: float = 1.5
    deadtime: float = 2.5
    initdead: float = 20


@dataclass(frozen=True)
class Respawn:
    user: str
    command: str


@dataclass(frozen=True)
class ApiAuth:
    client: str
    uid: Optional[str] = None
    gid: Optional[str] = None


@dataclass(frozen=True)
class Heartbeat:
    media: tuple[Media, ...]
    timing: Timing = field(default_factory=Timing)
    auto_failback: bool = False
    ping_nodes: tuple[IPv4Address, ...] = ()
    respawn: tuple[Respawn, ...] = ()
    apiauth: tuple[ApiAuth, ...] = ()
    logfacility: str = "local0"
    auth: AuthMethod = AuthMethod.SHA1


@dataclass(frozen=True)
class SyncDaemon:
    interface: Optional[str] = None
    syncid: int = 0


@dataclass(frozen=True)
class TestPage:
    path: str = "ldirector.html"
    content: str = "Test Page"


@dataclass(frozen=True)
class Pages:
    test: TestPage = field(default_factory=TestPage)
    fallback: str = "Service degraded: every real server is down; this director answers instead."


@dataclass(frozen=True)
class Cluster:
    name: str
    directors: tuple[Node, ...]
    real_servers: tuple[Node, ...]
    virtual_services: tuple[VirtualService, ...]
    heartbeat: Heartbeat
    release: Release = Release.TRIXIE
    package: Package = field(default_factory=Package)
    network: Network = field(default_factory=Network)
    ldirectord: Ldirectord = field(default_factory=Ldirectord)
    sync_daemon: SyncDaemon = field(default_factory=SyncDaemon)
    pages: Pages = field(default_factory=Pages)
    provisioning: Optional[Provisioning] = None
    repository: Optional[Repository] = None

    # Derived views: templates read these rather than recomputing them.
    @property
    def subnet(self) -> IPv4Network:
        return IPv4Network(f"{self.directors[0].address}/{self.network.prefix}", strict=False)

    @property
    def broadcast(self) -> IPv4Address:
        return self.network.broadcast or self.subnet.broadcast_address

    @property
    def vips(self) -> tuple[IPv4Address, ...]:
        seen: dict[IPv4Address, None] = {}
        for vs in self.virtual_services:
            seen.setdefault(vs.address, None)
        return tuple(seen)

    def _vips_for(self, forwarding: Forwarding) -> tuple[IPv4Address, ...]:
        seen: dict[IPv4Address, None] = {}
        for vs in self.virtual_services:
            if vs.forwarding is forwarding:
                seen.setdefault(vs.address, None)
        return tuple(seen)

    @property
    def loopback_vips(self) -> tuple[IPv4Address, ...]:
        """VIPs a real server holds on lo (direct routing)."""
        return self._vips_for(Forwarding.GATE)

    @property
    def tunnel_vips(self) -> tuple[IPv4Address, ...]:
        """VIPs a real server holds on tunl0 (IP-in-IP)."""
        return self._vips_for(Forwarding.IPIP)

    def reals_of(self, vs: VirtualService) -> tuple[tuple[Node, Optional[int], int], ...]:
        """(node, port, weight) for each real server of a virtual service; port is None for a
        fwm service whose real has none (IPVS keeps the packet's port)."""
        by_name = {n.name: n for n in self.real_servers}
        refs = vs.reals if vs.reals is not None else tuple(RealRef(n.name) for n in self.real_servers)
        return tuple((by_name[r.server], r.port or vs.port, r.weight) for r in refs)

    def interface_of(self, node: Node) -> str:
        return node.interface or self.network.interface

    @property
    def sync_interface(self) -> str:
        return self.sync_daemon.interface or self.network.interface

    @property
    def ipvs_modules(self) -> tuple[str, ...]:
        mods = set(TUTORIAL_IPVS_MODULES)
        mods.update(f"ip_vs_{vs.scheduler.value}" for vs in self.virtual_services)
        return tuple(sorted(mods))

    @property
    def realserver_interfaces(self) -> tuple[str, ...]:
        return tuple(sorted({self.interface_of(n) for n in self.real_servers}))

    @property
    def nodes(self) -> tuple[tuple[Node, Role], ...]:
        return (*((d, Role.DIRECTOR) for d in self.directors), *((r, Role.REALSERVER) for r in self.real_servers))

    @property
    def pool_addresses(self) -> tuple[IPv4Address, ...]:
        pool = self.provisioning.pool if self.provisioning else None
        if pool is None or pool.last < pool.first:
            return ()
        return tuple(IPv4Address(a) for a in range(int(pool.first), int(pool.last) + 1))


def pxe_problems(m: Cluster) -> list[Problem]:
    """What stops a PXE rollout of a valid spec: build-pxe refuses with these."""
    problems = []
    if m.provisioning is None:
        problems.append(Problem("provisioning", "missing: a PXE rollout needs the provisioning server's address "
                                "(provisioning: {server: ADDRESS}); see docs/spec.md"))
    for group in ("directors", "real_servers"):
        for i, node in enumerate(getattr(m, group)):
            if node.mac is None:
                problems.append(Problem(f"{group}[{i}].mac", f"{node.name} has no MAC, so no PXE entry can name it: "
                                        "add its MAC, or roll it out from a disk image"))
    return problems


# ---------------------------------------------------------------------------
# Loading: mapping -> dataclasses, collecting every problem with its path.


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))


class _Invalid:
    """Marks a value that failed to load; the problem is already recorded."""


INVALID = _Invalid()

_HINTS = typing.get_type_hints


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def _load_value(tp: Any, value: Any, path: str, c: _Collector) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _load_value(args[0], value, path, c)
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            c.add(path, f"expected a list, got {_describe(value)}")
            return INVALID
        items = [_load_value(item_tp, v, _join(path, i), c) for i, v in enumerate(value)]
        return INVALID if any(i is INVALID for i in items) else tuple(items)
    if dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, value, path, c)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        choices = [m.value for m in tp]
        if isinstance(value, str) and value in choices:
            return tp(value)
        c.add(path, f"{_describe(value)} is not {ENUM_NOUN.get(tp, 'a valid choice')} ({', '.join(choices)})")
        return INVALID
    if tp is IPv4Address:
        if isinstance(value, str):
            try:
                return IPv4Address(value)
            except ValueError:
                pass
        c.add(path, f"{_describe(value)} is not an IPv4 address")
        return INVALID
    if tp is bool:
        if isinstance(value, bool):
            return value
        c.add(path, f"expected yes or no, got {_describe(value)}")
        return INVALID
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        c.add(path, f"expected a whole number, got {_describe(value)}")
        return INVALID
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        c.add(path, f"expected a number of seconds, got {_describe(value)}")
        return INVALID
    if tp is str:
        if isinstance(value, str) and value != "":
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        c.add(path, f"expected text, got {_describe(value)}")
        return INVALID
    raise TypeError(f"model type {tp!r} has no loader")  # a bug in this module, not in the spec


def _load_dataclass(cls: Any, value: Any, path: str, c: _Collector) -> Any:
    if not isinstance(value, dict):
        c.add(path or "spec", f"expected a mapping, got {_describe(value)}")
        return INVALID
    hints = _HINTS(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    ok = True
    for key in value:
        if not isinstance(key, str) or key not in fields:
            msg = "unknown key"
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.7)
            if close:
                msg += f"; did you mean '{close[0]}'?"
            else:
                msg += f" (known: {', '.join(fields)})"
            c.add(_join(path, str(key)), msg)
            ok = False
    for name, f in fields.items():
        sub = _join(path, name)
        if name in value:
            loaded = _load_value(hints[name], value[name], sub, c)
            if loaded is INVALID:
                ok = False
            else:
                kwargs[name] = loaded
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            c.add(sub, "required")
            ok = False
    return cls(**kwargs) if ok else INVALID


def load(data: Any, *, allow_weak_auth: bool = False) -> tuple[Cluster, list[Problem]]:
    """Validate a parsed spec. Returns the model and its warnings, or raises SpecError."""
    c = _Collector()
    if not isinstance(data, dict):
        raise SpecError([Problem("spec", f"expected a mapping at the top level, got {_describe(data)}")])
    cluster = _load_dataclass(Cluster, data, "", c)
    if cluster is INVALID:
        raise SpecError(c.problems)
    warnings = _cross_check(cluster, c, allow_weak_auth)
    if c.problems:
        raise SpecError(c.problems)
    return cluster, warnings


# ---------------------------------------------------------------------------
# Cross-checks: mistakes that today surface only at daemon start or in production.

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_SERIAL_RE = re.compile(r"^/dev/tty[A-Za-z0-9]+$")
_FACILITY_RE = re.compile(r"^(local[0-7]|daemon|user|syslog|auth|authpriv|none|/\S+)$")
MAX_TIMING_S = 3600  # heartbeat timings: anything longer is a typo, and * 1000 must stay finite
_CHECK_SERVICES = (
    "dns", "ftp", "http", "https", "http_proxy", "imap", "imaps", "ldap", "mysql", "nntp",
    "none", "oracle", "pgsql", "pop", "pops", "radius", "simpletcp", "sip", "smtp", "submission",
)


def _port(c: _Collector, path: str, port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        c.add(path, f"{port} is not a port (1-65535)")


def _positive(c: _Collector, path: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        c.add(path, f"must be greater than 0, got {value:g}")


def _cross_check(m: Cluster, c: _Collector, allow_weak_auth: bool) -> list[Problem]:
    warnings: list[Problem] = []

    if not _NAME_RE.match(m.name):
        c.add("name", f"{m.name!r} is not a valid cluster name (lower-case letters, digits, '-')")

    v = m.package.version
    if not re.match(r"^[0-9][A-Za-z0-9.+~]*$", v):
        c.add("package.version", f"{v!r} is not a Debian native version (digits first, then [A-Za-z0-9.+~])")

    if not re.match(r"^[^<>]*[^<>\s] <[^@<>\s]+@[^@<>\s]+\.[^@<>\s]+>$", m.package.maintainer):
        c.add("package.maintainer", f"{m.package.maintainer!r} is not 'Full Name <address@domain>'")

    if not _IFACE_RE.match(m.network.interface):
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
            if not _NAME_RE.match(node.name):
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
                if not _MAC_RE.match(mac):
                    c.add(f"{p}.mac", f"{node.mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
                elif int(mac[:2], 16) & 1:
                    c.add(f"{p}.mac", f"{node.mac!r} is a multicast MAC; a NIC needs a unicast one")
                elif mac in macs:
                    c.add(f"{p}.mac", f"{node.mac!r} is already the MAC of {macs[mac]}")
                else:
                    macs[mac] = p
            if node.interface is not None and not _IFACE_RE.match(node.interface):
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
        _check_check(m, vs, c, f"{p}.check")
        if vs.emailalert is not None and "@" not in vs.emailalert:
            c.add(f"{p}.emailalert", f"{vs.emailalert!r} is not an e-mail address")

    ld = m.ldirectord
    _positive(c, "ldirectord.checkinterval", ld.checkinterval)
    _positive(c, "ldirectord.checktimeout", ld.checktimeout)
    _positive(c, "ldirectord.negotiatetimeout", ld.negotiatetimeout)
    _positive(c, "ldirectord.failurecount", ld.failurecount)
    if not _FACILITY_RE.match(ld.logfile):
        c.add("ldirectord.logfile", f"{ld.logfile!r} is neither a syslog facility nor an absolute path")
    if ld.emailalert is not None and "@" not in ld.emailalert:
        c.add("ldirectord.emailalert", f"{ld.emailalert!r} is not an e-mail address")

    _check_heartbeat(m, c, allow_weak_auth, warnings)

    if not _IFACE_RE.match(m.sync_interface):
        c.add("sync_daemon.interface", f"{m.sync_interface!r} is not an interface name")
    if not 0 <= m.sync_daemon.syncid <= 255:
        c.add("sync_daemon.syncid", f"{m.sync_daemon.syncid} is not a sync id (0-255)")

    tp = m.pages.test.path
    if tp.startswith("/") or "/" in tp or not re.match(r"^[A-Za-z0-9._-]+$", tp):
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


def _check_provisioning(m: Cluster, pv: Provisioning, c: _Collector, owners: dict[IPv4Address, str],
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
    if not _IFACE_RE.match(pv.interface):
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


def _check_check(m: Cluster, vs: VirtualService, c: _Collector, p: str) -> None:
    ck = vs.check
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


def _check_heartbeat(m: Cluster, c: _Collector, allow_weak_auth: bool, warnings: list[Problem]) -> None:
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
            elif not _SERIAL_RE.match(md.device):
                c.add(f"{p}.device", f"{md.device!r} is not a serial device (/dev/ttyS0, /dev/ttyUSB0, ...)")
            if md.baud not in (9600, 19200, 38400, 57600, 115200, 230400):
                c.add(f"{p}.baud", f"{md.baud} is not a baud rate heartbeat supports")
            if md.interface is not None:
                c.add(f"{p}.interface", "a serial medium has a device, not an interface")
            continue
        if md.device is not None:
            c.add(f"{p}.device", f"only for a serial medium, not {md.type.value}")
        iface = md.interface or m.network.interface
        if not _IFACE_RE.match(iface):
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
    if serials > 1:
        c.add("heartbeat.media", "heartbeat drives one serial link at a time; list one serial medium")

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
        if not r.command.startswith("/"):
            c.add(f"heartbeat.respawn[{i}].command", f"{r.command!r} must be an absolute path")
        elif r.command.startswith("/usr/lib/heartbeat/"):
            moved = r.command.replace("/usr/lib/heartbeat/", "/usr/libexec/heartbeat/")
            c.add(f"heartbeat.respawn[{i}].command", f"{r.command} does not exist in Debian's heartbeat 3.0.6; "
                  f"use {moved}")
    for i, a in enumerate(hb.apiauth):
        if a.uid is None and a.gid is None:
            c.add(f"heartbeat.apiauth[{i}]", "needs uid or gid")
    if not _FACILITY_RE.match(hb.logfacility):
        c.add("heartbeat.logfacility", f"{hb.logfacility!r} is not a syslog facility")
    if hb.auth is not AuthMethod.SHA1:
        if not allow_weak_auth:
            c.add("heartbeat.auth", f"{hb.auth.value} is weak; use sha1, or pass --allow-weak-auth to accept it")
        else:
            warnings.append(Problem("heartbeat.auth", f"{hb.auth.value} is weak; anyone on the segment "
                                    "can forge heartbeat packets"))
    addrs = {n.address for n in m.directors + m.real_servers}
    for i, ping in enumerate(hb.ping_nodes):
        if ping in addrs or ping in m.vips:
            c.add(f"heartbeat.ping_nodes[{i}]", f"{ping} is a cluster address; ping nodes must be outside the cluster "
                  "(a router), or ipfail learns nothing")


# ---------------------------------------------------------------------------
# Model -> plain data (for `lvs-builder show` and the round-trip test).


def to_data(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is None:
                continue
            out[f.name] = to_data(v)
        return out
    if isinstance(obj, tuple):
        return [to_data(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, IPv4Address):
        return str(obj)
    return obj
