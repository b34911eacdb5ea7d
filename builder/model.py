"""The validated, frozen cluster model: the only thing downstream code reads.

`loading.load(data)` makes it from a parsed spec (its type checks driven by these dataclasses'
annotations), `validation` cross-checks it; `to_data` turns it back into plain data.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Optional

from .errors import Problem

# The nodes' serial console: the images' kernel (console=ttyS0) and the lab's VMs write it;
# a heartbeat serial medium needs another port (the second one, ttyS1).
CONSOLE_TTY = "ttyS0"


class Release(enum.Enum):
    TRIXIE = "trixie"
    BOOKWORM = "bookworm"


class Firmware(enum.Enum):
    """What a disk image boots on. HYBRID, the default: one GPT image for both, as most machines
    racked today boot UEFI (many with Secure Boot on by policy) and some older ones BIOS."""
    HYBRID = "hybrid"  # GPT: an EFI system partition with Debian's signed shim and GRUB, and a BIOS boot partition
    BIOS = "bios"      # MBR, GRUB for BIOS: what every image was before


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
    Firmware: "an image firmware",
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
class Images:
    """The disk images (build-image, and those lab and build-pxe build): `--firmware` overrides."""
    firmware: Firmware = Firmware.HYBRID


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
    # ucast on a link of the directors' own (a second NIC, a crossover cable): each director's
    # address there, in the directors' order, and that link's prefix length
    addresses: tuple[IPv4Address, ...] = ()
    prefix: int = 24


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

    @property
    def ipfail(self) -> Optional[int]:
        """The index of ipfail among the respawned commands, if it is one: it gives the group
        up on a director that reaches fewer ping nodes than the other."""
        return next((i for i, r in enumerate(self.respawn) if r.command.rsplit("/", 1)[-1] == "ipfail"), None)


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
    images: Images = field(default_factory=Images)

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
    def heartbeat_paths(self) -> tuple[str, ...]:
        """heartbeat's independent paths between the directors: each interface its media use,
        and the serial line (a null-modem cable no switch can cut)."""
        paths = {f"serial {m.device}" if m.type is MediaType.SERIAL else m.interface or self.network.interface
                 for m in self.heartbeat.media}
        return tuple(sorted(paths))

    @property
    def heartbeat_link_names(self) -> tuple[str, ...]:
        """Each link as heartbeat names it (cl_status listhblinks: the serial device, or the
        interface), in ha.cf's order."""
        return tuple(dict.fromkeys(m.device or m.interface or self.network.interface for m in self.heartbeat.media))

    @property
    def heartbeat_links(self) -> tuple[Media, ...]:
        """ucast media on links of the directors' own, with each director's address there."""
        return tuple(m for m in self.heartbeat.media if m.addresses)

    @property
    def serial_medium(self) -> Optional[Media]:
        return next((m for m in self.heartbeat.media if m.type is MediaType.SERIAL), None)

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
