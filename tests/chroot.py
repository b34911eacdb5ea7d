"""Throw-away Debian chroots for install tests, from a cached mmdebstrap tarball.

The tarball and the downloaded .debs live in the user's cache dir (outside the repo), so only
the first run on a machine pays for the download. Maintainer scripts run with no network
(their own net namespace), no running init (policy-rc.d says no), and a private mount table.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
from pathlib import Path

from builder.mirror import debian_mirror
from builder.run import run

BASE_PACKAGES = ["systemd-sysv"]  # a node's init: update-rc.d and deb-systemd-helper behave as on a node


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    d = Path(base) / "lvs-builder" / "chroots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def tarball(release: str) -> Path:
    """The base system of `release`, made once with mmdebstrap from the machine's mirror."""
    tar = cache_dir() / f"{release}.tar"
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tar.exists():
            tmp = tar.with_suffix(".tar.part")
            run(["mmdebstrap", "--variant=apt", "--format=tar", "--skip=cleanup/apt/lists", "--components=main",
                 f"--include={','.join(BASE_PACKAGES)}", release, tmp, f"deb {debian_mirror()} {release} main"])
            tmp.rename(tar)
    return tar


def piuparts_base(release: str) -> Path:
    """piuparts' initial chroot for `release` (a gzipped tarball, as its --basetgz takes), made
    once with mmdebstrap from the machine's mirror: minbase, as piuparts' own debootstrap makes."""
    tgz = cache_dir() / f"piuparts-{release}.tar.gz"
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tgz.exists():
            tmp = cache_dir() / f"piuparts-{release}.part.tar.gz"
            run(["mmdebstrap", "--variant=minbase", "--components=main", release, tmp,
                 f"deb {debian_mirror()} {release} main"])
            tmp.rename(tgz)
    return tgz


class Chroot:
    def __init__(self, release: str, root: Path):
        self.release = release
        self.root = root
        self.archives = cache_dir() / f"archives-{release}"
        self.archives.mkdir(exist_ok=True)
        (self.archives / "partial").mkdir(exist_ok=True)
        # The shared cache holds the archive's packages only. apt takes a cached .deb whose name and
        # size match the index without checking its hash, so one from an earlier test's repository
        # (same version, another throw-away key, same size) would be installed in place of the one
        # served now; such files are removed, and test repositories are not cached (see sh()).
        for stale in self.archives.glob("lvs-*.deb"):
            stale.unlink()

    @classmethod
    def create(cls, release: str, where: Path) -> Chroot:
        root = where / f"root-{release}"
        root.mkdir()
        run(["tar", "-C", root, "-xf", tarball(release)])
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# no daemons in a test chroot\nexit 101\n")
        policy.chmod(0o755)
        # Speed only: no fsync, no man pages or translations, no man-db trigger.
        (root / "etc/dpkg/dpkg.cfg.d/lvs-test").write_text(
            "force-unsafe-io\npath-exclude=/usr/share/man/*\npath-exclude=/usr/share/locale/*\n")
        # Depends and Pre-Depends only, as piuparts installs (its default; --install-recommends
        # is its option): heartbeat's Recommends pull in fence-agents and their Python cloud
        # SDKs (python3-azure alone byte-compiles for 90 s), 4m44s of a director install test's
        # 5m49s, none of it a file of ours or a dependency of our packages.
        (root / "etc/apt/apt.conf.d/90lvs-test").write_text('APT::Install-Recommends "false";\n')
        return cls(release, root)

    def sh(self, script: str, *, network: bool = False, netns: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the chroot, in private mount (and, unless network, net) namespaces;
        with `netns`, inside that (test-made) network namespace instead, where apt reaches only the
        test's own repository: its downloads stay in the chroot, out of the shared cache."""
        inner = f"exec chroot {shlex.quote(str(self.root))} /bin/sh -ec {shlex.quote(script)}"
        if netns is None:
            inner = (f"mount --bind {shlex.quote(str(self.archives))} {shlex.quote(str(self.root))}"
                     f"/var/cache/apt/archives && {inner}")
        cmd = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={self.root}/proc"]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        elif not network:
            cmd.append("--net")
        return run([*cmd, "/bin/sh", "-ec", inner], check=check,
                   env={"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
                        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})

    def apt(self, args: str) -> str:
        """apt-get with downloads (network) first, then the real run offline, where anything not
        downloaded fails (--no-download would, but it mishandles local .debs)."""
        self.sh(f"apt-get -q -y --download-only {args}", network=True)
        return self.sh(f"apt-get -q -y {args}").stdout

    def paths_naming(self, word: str) -> list[str]:
        """Paths anywhere (bookkeeping of apache2 and deb-systemd-helper included) whose name has `word`;
        dpkg's and apt's own records and logs aside."""
        skip = ("var/lib/dpkg/", "var/cache/", "var/log/", "proc/")
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root)
                if word in name and not rel.startswith(skip):
                    out.append(rel)
        return out

    def snapshot(self) -> dict[str, str]:
        """Every path of the system (not apt's and dpkg's own records), with type, mode and link target."""
        skip = ("var/lib/dpkg/", "var/lib/apt/", "var/cache/", "var/log/", "tmp/", "proc/", "run/", "dev/",
                "var/lib/systemd/deb-systemd-helper-enabled/", "var/lib/systemd/deb-systemd-helper-masked/",
                "var/lib/apache2/", "etc/ld.so.cache")
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, self.root)
                if rel.startswith(skip) or rel + "/" in skip:
                    continue
                st = os.lstat(full)
                if os.path.islink(full):
                    out[rel] = "-> " + os.readlink(full)
                else:
                    out[rel] = oct(st.st_mode)
        return out
