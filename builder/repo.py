"""An apt repository of a cluster's role packages, for upgrades the Debian way.

    DIR/lvs-director_<version>_all.deb, lvs-realserver_<version>_all.deb   every version published
    DIR/Packages, Packages.gz            dpkg-scanpackages --multiversion
    DIR/Release                          its checksums (python-debian's deb822)
    DIR/InRelease, Release.gpg           GnuPG signatures, when a key is given
    DIR/lvs-<cluster>.sources            the deb822 entry nodes need, the key inline in Signed-By
    DIR/.lvs-builder-repo.json           its URL and the directors' addresses (`repo serve` reads it; never served)

A flat repository (`Suites: ./`): one cluster, one directory, served as it is by `lvs-builder
repo serve` (or any web server told the same: lvs-director_*.deb, the directors' configuration,
goes to the directors' addresses only). No package in it carries the cluster's heartbeat keys:
lvs-cluster-key is never published, and a .deb holding /etc/ha.d/authkeys is refused.
Publishing a new spec version adds its packages beside the earlier ones (apt installs the
highest; the earlier stay there to go back to). The directory is rebuilt in a staging
directory and renamed into place, so a node never reads a Packages file that names a .deb
not yet there.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from debian import deb822

from . import deb as debpkg
from . import render, writer
from .errors import BuilderError
from .model import Cluster
from .run import require, run
from .serve import Policy, http_server
from .writer import replace_dir, staging

REPO_PORT = 8080
READY = "ready:"
INDEXES = ("Packages", "Packages.gz")
ACCESS = ".lvs-builder-repo.json"
# The directors' own packages go to the directors' addresses only: lvs-director (their
# configuration), and lvs-cluster-key, should someone copy it in by hand (build-repo never does).
PRIVATE = ("lvs-director_*.deb", "lvs-cluster-key_*.deb")
VALID_DAYS = 90                     # Release's Valid-Until: apt refuses a repository older than this


@dataclass(frozen=True)
class Repo:
    path: Path
    packages: list[tuple[str, str]]   # (package, version), everything the repository holds
    signed_by: str | None             # the key's fingerprint, None if unsigned
    sources: Path


def default_url(cluster: Cluster) -> str:
    if cluster.repository is not None:
        return cluster.repository.url
    if cluster.provisioning is None:
        raise BuilderError("build-repo: --url: the spec has no provisioning server; say where the nodes "
                           "will reach the repository (--url http://HOST:PORT/)")
    return f"http://{cluster.provisioning.server}:{REPO_PORT}/"


def _gpg(*args: str, input: str | None = None) -> str:
    gpg = require("gpg", "gpg")
    return run([gpg, "--batch", "--yes", *args], input=input).stdout


def key_fingerprint(armored: str, where: str) -> str:
    """The fingerprint of an armored public key (not imported anywhere)."""
    try:
        out = _gpg("--with-colons", "--show-keys", input=armored)
    except BuilderError:
        out = ""
    fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
    if not fprs:
        raise BuilderError(f"{where}: not an OpenPGP public key (gpg --armor --export KEYID writes one)")
    return fprs[0]


def fingerprint(key: str) -> str:
    """The fingerprint of the secret key `key` names (a key ID, fingerprint or user ID)."""
    try:
        out = _gpg("--with-colons", "--list-secret-keys", key)
    except BuilderError:
        raise BuilderError(f"build-repo: --sign-key {key}: no such secret key in GnuPG's keyring") from None
    fprs = [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]
    if not fprs:
        raise BuilderError(f"build-repo: --sign-key {key}: no such secret key in GnuPG's keyring")
    return fprs[0]


@contextlib.contextmanager
def throwaway_key(home: Path, user: str) -> Iterator[str]:
    """A new GnuPG home with one signing key and no passphrase, GnuPG's default while the
    block runs (the lab signs its repository with it); yields the key's fingerprint. The
    agent GnuPG started for it is stopped on the way out."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    before = os.environ.get("GNUPGHOME")
    os.environ["GNUPGHOME"] = str(home)
    try:
        _gpg("--passphrase", "", "--quick-gen-key", user, "ed25519", "sign", "never")
        yield fingerprint(user)
    finally:
        run([require("gpgconf", "gpg"), "--kill", "all"], check=False)
        if before is None:
            del os.environ["GNUPGHOME"]
        else:
            os.environ["GNUPGHOME"] = before


def _release(root: Path, cluster: Cluster, valid_days: int) -> str:
    release = deb822.Release()
    release["Origin"] = f"lvs-builder {cluster.name}"
    release["Label"] = f"lvs-{cluster.name}"
    release["Description"] = f"Role packages of the {cluster.name} LVS cluster"
    now = time.time()
    release["Date"] = formatdate(now, usegmt=True)
    release["Valid-Until"] = formatdate(now + valid_days * 86400, usegmt=True)
    release["Architectures"] = "all"
    for field, key, algo in (("MD5Sum", "md5sum", hashlib.md5), ("SHA256", "sha256", hashlib.sha256)):
        release[field] = [{key: algo((root / name).read_bytes()).hexdigest(),  # type: ignore[assignment]  # multivalued field
                           "size": str((root / name).stat().st_size), "name": name} for name in INDEXES]
    return release.dump()


def claim(out: Path, force: bool = False) -> None:
    """Refuse an --out that is neither new, empty nor a repository of ours (writer.claim)."""
    writer.claim(out, force, legacy=ACCESS)


def build(cluster: Cluster, debs: list[Path], out: Path, url: str, sign_key: str | None = None,
          spec_key: str | None = None, valid_days: int = VALID_DAYS, force: bool = False) -> Repo:
    """Publish `debs` into the repository at `out` (keeping the versions already there).
    `spec_key`: the public key the spec's repository.key names, which the role packages'
    sources entry trusts: the repository must be signed with it."""
    scan = require("dpkg-scanpackages", "dpkg-dev")
    fpr = fingerprint(sign_key) if sign_key else None
    if spec_key is not None:
        expected = key_fingerprint(spec_key, "repository.key")
        if fpr is None:
            raise BuilderError(f"build-repo: --sign-key: required: the spec's repository.key ({expected}) is what "
                               "the nodes trust")
        if fpr != expected:
            raise BuilderError(f"build-repo: --sign-key {sign_key}: {fpr} is not the spec's repository.key "
                               f"({expected}); the nodes would refuse the repository")
    for deb in [*debs, *(out.glob("*.deb") if out.is_dir() else [])]:
        if debpkg.carries_key_file(deb):
            raise BuilderError(f"build-repo: {deb}: carries the cluster's heartbeat keys (/etc/ha.d/authkeys; an "
                               "lvs-director of an lvs-builder before lvs-cluster-key, or lvs-cluster-key itself); "
                               "a repository publishes none: take it out of the repository, then publish again")
    with staging(out) as tmp:
        root = tmp / "repo"
        root.mkdir()
        if out.exists():
            for old in out.glob("*.deb"):
                shutil.copy2(old, root / old.name)
        for deb in debs:
            shutil.copy2(deb, root / deb.name)  # the same name is the same version: ours replaces it
        packages = run([scan, "--multiversion", "."], cwd=root, merge_stderr=False).stdout
        (root / "Packages").write_text(packages)
        (root / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
        (root / "Release").write_text(_release(root, cluster, valid_days))
        public_key = None
        if fpr:
            _gpg("--local-user", fpr, "--digest-algo", "SHA512", "--clearsign", "-o", str(root / "InRelease"),
                 str(root / "Release"))
            _gpg("--local-user", fpr, "--digest-algo", "SHA512", "--armor", "--detach-sign", "-o",
                 str(root / "Release.gpg"), str(root / "Release"))
            public_key = spec_key or _gpg("--armor", "--export", fpr)
        (root / render.sources_name(cluster)).write_text(render.sources_entry(cluster, url, public_key))
        (root / ACCESS).write_text(json.dumps({
            "url": url, "directors": sorted(str(n.address) for n in cluster.directors)}, indent=1) + "\n")
        held = sorted((p["Package"], p["Version"])
                      for p in deb822.Packages.iter_paragraphs(packages, use_apt_pkg=False))
        replace_dir(root, out, force, legacy=ACCESS)
    return Repo(out, held, fpr, out / render.sources_name(cluster))


def access(root: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((root / ACCESS).read_text())
    except FileNotFoundError:
        if (root / "Release").exists():
            raise BuilderError(f"{root}: no {ACCESS}: made by an older lvs-builder; publish it again "
                               f"(build-repo --out {root})") from None
        raise BuilderError(f"{root}: not a repository build-repo made (no Release)") from None
    return data


def serve(root: Path, address: str | None, port: int | None, say: Callable[[str], None] = print,
          directors: tuple[str, ...] = ()) -> None:
    """Serve the repository over HTTP in the foreground until SIGINT/SIGTERM: on the address
    and port of the URL it was published for unless told otherwise; its director packages to the
    directors' addresses (and `directors`) only."""
    meta = access(root)
    url = urlsplit(str(meta["url"]))
    address = address or url.hostname or ""
    port = port if port is not None else (url.port or 80)
    insiders = frozenset([*meta["directors"], *directors])
    httpd = http_server(root, address, port, Policy(PRIVATE, insiders, None), say, "repo serve")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    say(f"{READY} serving {root} at http://{address}:{httpd.server_address[1]}/ (lvs-director to "
        f"{', '.join(sorted(insiders))} only); Ctrl-C stops")
    try:
        stop.wait()
    finally:
        httpd.shutdown()
        httpd.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
