"""Role packages (and lvs-apt-source): rendered tree + control data (python-debian) -> .deb (dpkg-deb).

dpkg-deb rather than debhelper: a role package is a fixed set of rendered files and four
maintainer scripts, so a staging tree and `dpkg-deb --build` is all the packaging there is;
no source package, no build dependencies, and a build in well under a second.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822
from debian.debfile import DebError, DebFile
from debian.debian_support import Version

from . import authkey as keys
from . import render as rendering
from .authkey import Ring
from .errors import BuilderError
from .model import Cluster, Extra, Kind, Role
from .run import require, run
from .writer import populate, staging

# The package that carries the cluster's keys (lvs-cluster-key) is readable by its owner only,
# and records which keys it carries (their fingerprints, a node file from overlays/) for the
# next build to compare. lvs-director from before lvs-cluster-key carried the key itself, and
# recorded it in LEGACY_KEY_RECORD.
KEY_MODE = 0o600
KEY_FILE = "etc/ha.d/authkeys"
KEY_RECORD = "usr/share/lvs-cluster-key/fingerprints"
LEGACY_KEY_RECORD = "usr/share/lvs-director/cluster-key.fingerprint"

# 2026-01-01T00:00:00Z: file dates and the changelog date when SOURCE_DATE_EPOCH is unset,
# so that the same spec and version give the same bytes on any machine, any day.
DEFAULT_EPOCH = 1767225600

# The director's preinst diverts a conffile of each (ldirectord's dummy ldirectord.cf,
# heartbeat's harc): they must be unpacked and configured first, or dpkg leaves their
# conffile as .dpkg-new beside the diverted name (a fresh `apt install` unpacks everything
# before it configures anything).
PRE_DEPENDS: dict[Kind, list[str]] = {Role.DIRECTOR: ["heartbeat", "ldirectord"], Role.REALSERVER: [],
                                      Extra.APT_SOURCE: [], Extra.CLUSTER_KEY: []}
# lvs-director needs the keys, but any version of them: lvs-cluster-key is installed with the
# image (or out of band) and is never in the repository, so lvs-director upgrades without it.
# apache2, not "apache2 | httpd": the pages both roles serve are apache2 configuration (/ for
# the cluster's own Host names, mod_include's server-side include), which another web server
# would not read.
DEPENDS: dict[Kind, list[str]] = {
    Role.DIRECTOR: ["lvs-cluster-key", "ipvsadm", "iproute2", "iputils-arping", "kmod", "procps", "apache2",
                    "libnss-myhostname", "python3"],
    Role.REALSERVER: ["apache2", "iproute2", "procps", "libnss-myhostname"],
    Extra.APT_SOURCE: ["apt (>= 2.3.10)"],  # a key inline in Signed-By
    Extra.CLUSTER_KEY: [],
}
CONFLICTS: dict[Kind, str | None] = {Role.DIRECTOR: "lvs-realserver", Role.REALSERVER: "lvs-director",
                                     Extra.APT_SOURCE: None, Extra.CLUSTER_KEY: None}
# authkeys moves from an lvs-director of an earlier lvs-builder into lvs-cluster-key.
REPLACES: dict[Kind, str | None] = {Extra.CLUSTER_KEY: "lvs-director"}
SUMMARY = {
    Role.DIRECTOR: "LVS director of the {name} cluster (heartbeat, ldirectord, IPVS)",
    Role.REALSERVER: "LVS real server of the {name} cluster (VIP on lo, ARP settings, pages)",
    Extra.APT_SOURCE: "apt source of the {name} LVS cluster's role packages",
    Extra.CLUSTER_KEY: "heartbeat keys of the {name} LVS cluster's directors",
}
DESCRIPTION = {
    Role.DIRECTOR: (
        "Makes this node one of the two directors of the {name} cluster: heartbeat\n"
        "moves the virtual IP addresses between the directors, ldirectord checks the\n"
        "real servers and keeps the IPVS table, the IPVS sync daemon follows the\n"
        "active director, and a fallback page answers when every real server is down.\n"
        "The cluster's heartbeat keys are in lvs-cluster-key, installed beside it."
    ),
    Role.REALSERVER: (
        "Makes this node a real server of the {name} cluster: the virtual IP\n"
        "addresses on the loopback before the network comes up, ARP settings so that\n"
        "only the directors answer for them, the health-check page ldirectord expects\n"
        "and an index page that names the server that answered."
    ),
    Extra.APT_SOURCE: (
        "The sources entry of the apt repository that lvs-builder's build-repo\n"
        "publishes the {name} cluster's role packages to, with the key that signs\n"
        "it: a node with this package upgrades its role package with apt-get upgrade."
    ),
    Extra.CLUSTER_KEY: (
        "The keys heartbeat authenticates the {name} cluster's directors with\n"
        "(/etc/ha.d/authkeys). It is a secret: install it on the directors only,\n"
        "with their image or out of band; it is never published in the cluster's\n"
        "repository. A running heartbeat rereads the keys when it is installed (at\n"
        "a rotation's sign step, when lvs-cluster-key-switch runs on both\n"
        "directors), so that a key rotation needs no restart."
    ),
}


@dataclass(frozen=True)
class BuiltDeb:
    path: Path
    package: str
    version: str


def build_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.isdigit() else DEFAULT_EPOCH


def deb_name(cluster: Cluster, role: Kind, ring: Ring | None = None) -> str:
    return f"{role.package}_{rendering.version(cluster, role, ring)}_all.deb"


def control(cluster: Cluster, role: Kind, installed_kib: int, ring: Ring | None = None) -> Deb822:
    c = Deb822()
    c["Package"] = role.package
    c["Version"] = rendering.version(cluster, role, ring)
    c["Architecture"] = "all"
    c["Maintainer"] = cluster.package.maintainer
    c["Installed-Size"] = str(installed_kib)
    if PRE_DEPENDS[role]:
        c["Pre-Depends"] = ", ".join(PRE_DEPENDS[role])
    if DEPENDS[role]:
        c["Depends"] = ", ".join(DEPENDS[role])
    conflicts = CONFLICTS[role]
    if conflicts:
        c["Conflicts"] = conflicts
    replaces = REPLACES.get(role)
    if replaces:
        c["Replaces"] = replaces
    c["Section"] = "admin"
    c["Priority"] = "optional"
    long = DESCRIPTION[role].format(name=cluster.name)
    c["Description"] = SUMMARY[role].format(name=cluster.name) + "\n" + "\n".join(
        " " + line for line in long.splitlines())
    return c


def _installed_kib(files: dict[str, rendering.FileSpec]) -> int:
    dirs = {str(Path(p).parent) for p in files}
    return sum((len(f.content) + 1023) // 1024 for f in files.values()) + len(dirs)


def package_tree(cluster: Cluster, role: Kind, ring: Ring | None, epoch: int,
                 repo_key: str | None = None) -> dict[str, rendering.FileSpec]:
    """The whole package: node files plus DEBIAN/ (control, conffiles, md5sums, scripts)."""
    files = rendering.render(cluster, role, ring, epoch=epoch, repo_key=repo_key)
    tree = dict(files)
    for name, spec in rendering.render_control(cluster, role, ring).items():
        tree[f"DEBIAN/{name}"] = rendering.FileSpec(spec.content, 0o755)
    tree["DEBIAN/control"] = rendering.FileSpec(
        control(cluster, role, _installed_kib(files), ring).dump().encode("utf-8"))
    conffiles = rendering.conffiles(files)
    if conffiles:
        tree["DEBIAN/conffiles"] = rendering.FileSpec(("\n".join(conffiles) + "\n").encode())
    md5 = "".join(f"{hashlib.md5(files[p].content).hexdigest()}  {p}\n"
                  for p in sorted(files) if not p.startswith("etc/"))
    tree["DEBIAN/md5sums"] = rendering.FileSpec(md5.encode())
    return tree


def build(cluster: Cluster, role: Kind, out_dir: Path, ring: Ring | None = None,
          repo_key: str | None = None) -> BuiltDeb:
    """Build the package into out_dir, atomically: a failed build leaves nothing there; the
    one with the keys (`ring`: lvs-cluster-key) readable by its owner only."""
    require("dpkg-deb", "dpkg")
    if role is Extra.APT_SOURCE and cluster.repository is None:
        raise BuilderError("build-deb apt-source: repository: the spec names no repository "
                           "(repository: {url: ..., key: ...}; see docs/spec.md)")
    epoch = build_epoch()
    tree = package_tree(cluster, role, ring, epoch, repo_key)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / deb_name(cluster, role, ring)
    with staging(final) as tmp:
        root = tmp / "root"
        root.mkdir()
        populate(tree, root, mtime=epoch)
        os.chmod(root, 0o755)
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
        built = tmp / final.name
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, built],
            env={"SOURCE_DATE_EPOCH": str(epoch)})
        os.chmod(built, KEY_MODE if ring is not None else 0o644)
        os.replace(built, final)
    return BuiltDeb(final, role.package, rendering.version(cluster, role, ring))


def newest(out: Path, package: str) -> Path | None:
    """The highest version of `package` among the .debs directly in `out`, if any."""
    found = []
    for path in out.glob(f"{package}_*_all.deb") if out.is_dir() else []:
        version = path.name[len(package) + 1:-len("_all.deb")]
        try:
            found.append((Version(version), path))
        except ValueError:
            continue
    return max(found)[1] if found else None


def carried_keys(deb: Path) -> keys.Record | None:
    """Which keys a package carries (its KEY_RECORD, or an older lvs-director's
    LEGACY_KEY_RECORD), or None for a package without keys."""
    try:
        data = DebFile(str(deb)).data
    except (OSError, KeyError, ValueError, DebError):
        return None
    for record in (KEY_RECORD, LEGACY_KEY_RECORD):
        try:
            text = data.get_content(record, encoding="ascii")
        except (OSError, KeyError, ValueError, DebError):
            continue
        if text:
            return keys.parse_record(text)
    return None


def carries_key_file(deb: Path) -> bool:
    """Whether a package holds /etc/ha.d/authkeys (the cluster's keys)."""
    try:
        return f"./{KEY_FILE}" in DebFile(str(deb)).data.tgz().getnames()
    except (OSError, KeyError, ValueError, DebError):
        return True  # unreadable: not to be published as keyless


def lintian(deb: Path) -> str:
    """lintian's verdict: its output, or ToolError if it reports an error or a warning."""
    require("lintian", "lintian")
    proc = run(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", deb])
    return proc.stdout
