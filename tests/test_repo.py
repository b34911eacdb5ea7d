"""build-repo: the apt repository of the role packages, its signature, publishing a new version,
and (slow) apt in a trixie chroot installing and upgrading from it over HTTP, the repository
served inside a network namespace the test makes (loopback only)."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import authkey, deb, spec
from builder.cli import cli
from builder.deb import lintian
from builder.model import Extra, Role
from debian import deb822

from .conftest import REPO, http_status, need_tool, write_spec


@pytest.fixture(scope="module")
def gnupg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A throw-away GnuPG home with one signing key, no passphrase."""
    need_tool("gpg")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {"GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "lvs-builder test <repo@example.org>",
                    "ed25519", "sign", "never"], env={**os.environ, **env}, check=True, capture_output=True)
    yield env
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, **env}, check=False)


def specs(tmp_path: Path, repository: dict[str, str] | None = None) -> tuple[Path, Path, Path]:
    """The reference spec at version 1.0 and at 1.1 (deadtime 4 s: ha.cf changes), one key."""
    data = spec.parse(spec.reference_text())
    if repository is not None:
        data["repository"] = repository
    v1 = write_spec(tmp_path, data, "v1.yaml")
    if not authkey.default_path(v1).exists():
        authkey.create(authkey.default_path(v1))  # one key for both versions, as an operator keeps it
    data["package"]["version"] = "1.1"
    data["heartbeat"]["timing"]["deadtime"] = 4
    v2 = write_spec(tmp_path, data, "v2.yaml")
    return v1, v2, Path(authkey.default_path(v1))


def build_repo(out: Path, spec_path: Path, authkey: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["build-repo", "--spec", str(spec_path), "--authkey-file", str(authkey),
                                    "--out", str(out), *extra], env=env)


def packages(repo: Path) -> list[tuple[str, str]]:
    text = (repo / "Packages").read_text()
    return sorted((p["Package"], p["Version"]) for p in deb822.Packages.iter_paragraphs(text, use_apt_pkg=False))


def test_unsigned_repository_indexes_and_sources(tmp_path: Path) -> None:
    v1, _, key = specs(tmp_path)
    repo = tmp_path / "repo"
    r = build_repo(repo, v1, key)
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == ("error: build-repo: --sign-key: required (a GnuPG secret key the nodes "
                                         "will trust); an unsigned repository only with --insecure")
    assert not repo.exists()
    r = build_repo(repo, v1, key, "--insecure")
    assert r.exit_code == 0, r.output
    assert "warning: build-repo --insecure: the repository is unsigned" in r.output
    assert packages(repo) == [("lvs-director", "1.0"), ("lvs-realserver", "1.0")]
    release = deb822.Release((repo / "Release").read_text())
    until, date = (email.utils.parsedate_to_datetime(release[f]) for f in ("Valid-Until", "Date"))
    assert (until - date).days == 90
    for entry in release["SHA256"]:
        f = repo / entry["name"]
        assert (hashlib.sha256(f.read_bytes()).hexdigest(), str(f.stat().st_size)) == (entry["sha256"], entry["size"])
    for p in deb822.Packages.iter_paragraphs((repo / "Packages").read_text(), use_apt_pkg=False):
        assert hashlib.sha256((repo / p["Filename"]).read_bytes()).hexdigest() == p["SHA256"]
    assert not (repo / "InRelease").exists()
    [entry] = deb822.Deb822.iter_paragraphs((repo / "lvs-reference.sources").read_text())
    assert dict(entry) == {"Types": "deb", "URIs": "http://192.168.1.10:8080/", "Suites": "./", "Trusted": "yes"}
    assert not list(tmp_path.glob(".repo.staging-*"))


def test_signed_repository_verifies_and_a_tampered_one_does_not(tmp_path: Path, gnupg: dict[str, str]) -> None:
    need_tool("gpgv")
    v1, _, key = specs(tmp_path)
    repo = tmp_path / "repo"
    r = build_repo(repo, v1, key, "--sign-key", "repo@example.org", env=gnupg)
    assert r.exit_code == 0, r.output
    assert "unsigned" not in r.output
    [entry] = deb822.Deb822.iter_paragraphs((repo / "lvs-reference.sources").read_text())
    assert "Trusted" not in entry
    # apt's way: the key in Signed-By is the only one that counts
    lines = [line.strip() for line in entry["Signed-By"].strip().splitlines()]
    armored = "\n".join("" if line == "." else line for line in lines) + "\n"
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--dearmor"], input=armored.encode(), capture_output=True,
                                       check=True).stdout)

    def gpgv(path: Path) -> int:
        return subprocess.run(["gpgv", "--keyring", str(keyring), str(path)], capture_output=True).returncode

    assert gpgv(repo / "InRelease") == 0
    assert subprocess.run(["gpgv", "--keyring", str(keyring), str(repo / "Release.gpg"), str(repo / "Release")],
                          capture_output=True).returncode == 0
    tampered = tmp_path / "InRelease"
    tampered.write_text((repo / "InRelease").read_text().replace("Label: lvs-reference", "Label: lvs-evil"))
    assert gpgv(tampered) != 0


def test_publishing_a_new_version_keeps_the_earlier(tmp_path: Path) -> None:
    v1, v2, key = specs(tmp_path)
    repo = tmp_path / "repo"
    assert build_repo(repo, v1, key, "--insecure").exit_code == 0
    r = build_repo(repo, v2, key, "--insecure", "--valid-days", "7")
    assert r.exit_code == 0, r.output
    assert packages(repo) == [("lvs-director", "1.0"), ("lvs-director", "1.1"),
                              ("lvs-realserver", "1.0"), ("lvs-realserver", "1.1")]


def ha_cf(deb_path: Path) -> str:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb_path)], capture_output=True, check=True).stdout
    return subprocess.run(["tar", "-xO", "./etc/ha.d/ha.cf"], input=tar, capture_output=True,
                          check=True).stdout.decode()


def test_the_labs_upgrade_repository_is_signed_under_a_workdir_too_deep_for_a_gnupg_socket(tmp_path: Path) -> None:
    """`lab --upgrade` publishes into WORKDIR/repo; its throw-away key's GnuPG home must not
    follow (gpg-agent's socket path has 108 bytes: CI's workdir under pytest's tmp failed).
    With --upgrade-to, the upgrade is that spec's cluster at the next version: the reference
    cluster gains its second heartbeat path and a ping node."""
    from builder import pipeline

    need_tool("gpg")
    out = tmp_path / ("deep-" * 12) / "lab" / "repo"
    assert len(str(out / ".lvs-builder-xxxxxxxx" / "gnupg" / "S.gpg-agent.browser")) > 108
    loaded = pipeline.load_cluster(None)
    two_paths = pipeline.load_cluster(REPO / "docs" / "examples" / "two-paths.yaml").cluster
    new = pipeline.upgrade_target(loaded.cluster, two_paths, "two-paths.yaml")
    assert new.package.version == "1.1" and new.heartbeat.ping_nodes == two_paths.heartbeat.ping_nodes
    pipeline.lab_upgrade_repo(loaded, out, "http://192.168.1.254:8080/", new)
    assert (out / "InRelease").exists()
    assert sorted(p.name for p in out.glob("lvs-director_*.deb")) == ["lvs-director_1.0_all.deb",
                                                                     "lvs-director_1.1_all.deb"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["repo"]  # its package copies are gone
    old_cf, new_cf = (ha_cf(out / f"lvs-director_{v}_all.deb") for v in ("1.0", "1.1"))
    assert "serial /dev/ttyS1" not in old_cf and "ping 192.168.1.1" not in old_cf
    assert "serial /dev/ttyS1" in new_cf and "ping 192.168.1.1" in new_cf


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["directors"][1].update(address="192.168.1.12"), "directors"),
    (lambda d: d["virtual_services"][0].update(scheduler="wlc"), "virtual_services"),
    (lambda d: d["heartbeat"]["media"].append({"type": "ucast", "interface": "eth1",
                                               "addresses": ["10.9.0.1", "10.9.0.2"], "prefix": 30}),
     "heartbeat.media"),
])
def test_an_upgrade_to_another_cluster_is_one_line_naming_what_differs(tmp_path: Path, change: Any,
                                                                        field: str) -> None:
    data = spec.parse((REPO / "docs" / "examples" / "two-paths.yaml").read_text())
    change(data)
    other = write_spec(tmp_path, data, "other.yaml")
    r = CliRunner().invoke(cli, ["lab", "--images", str(tmp_path / "none"), "--no-build", "--upgrade",
                                 "--upgrade-to", str(other)])
    assert r.exit_code == 1, r.output
    last = r.output.splitlines()[-1]
    assert last.startswith(f"error: --upgrade-to {other}: {field}"), last
    assert not (tmp_path / "none").exists()  # checked before any image is looked for or built


def test_bad_key_and_missing_url_are_one_line_errors(tmp_path: Path, gnupg: dict[str, str]) -> None:
    v1, _, key = specs(tmp_path)
    r = build_repo(tmp_path / "repo", v1, key, "--sign-key", "nobody@example.org", env=gnupg)
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == ("error: build-repo: --sign-key nobody@example.org: no such secret key "
                                         "in GnuPG's keyring")
    data = spec.parse(spec.reference_text())
    del data["provisioning"]
    for d in data["directors"] + data["real_servers"]:
        d.pop("mac", None)
    r = build_repo(tmp_path / "repo", write_spec(tmp_path, data, "nopxe.yaml"), key, "--insecure")
    assert r.exit_code == 1
    assert r.output.splitlines()[-1].startswith("error: build-repo: --url: the spec has no provisioning server")
    assert not (tmp_path / "repo").exists()


def export_key(gnupg: dict[str, str], dest: Path) -> Path:
    dest.write_bytes(subprocess.run(["gpg", "--armor", "--export", "repo@example.org"], env={**os.environ, **gnupg},
                                    capture_output=True, check=True).stdout)
    return dest


def deb_file(deb: Path, path: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"x-{deb.name}"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    return (out / path).read_bytes()


def test_with_a_repository_in_the_spec_lvs_apt_source_carries_the_repositorys_entry(
        tmp_path: Path, gnupg: dict[str, str]) -> None:
    """The spec names the repository and its key: build-repo publishes lvs-apt-source beside the
    role packages, carrying the sources entry as a conffile, byte for byte the one it writes
    beside the indexes; whatever installs it (an image, the PXE tree, apt) leaves a node that
    upgrades from the repository. Debian's rule for packages that install apt sources (the
    name ends in -apt-source) holds: lintian's verdict is clean."""
    url = "http://192.168.1.10:8080/"
    v1, _, key = specs(tmp_path, {"url": url, "key": export_key(gnupg, tmp_path / "repo-key.asc").name})
    repo = tmp_path / "repo"
    r = build_repo(repo, v1, key, "--sign-key", "repo@example.org", env=gnupg)
    assert r.exit_code == 0, r.output
    assert packages(repo) == [("lvs-apt-source", "1.0"), ("lvs-director", "1.0"), ("lvs-realserver", "1.0")]
    entry = (repo / "lvs-reference.sources").read_bytes()
    [parsed] = deb822.Deb822.iter_paragraphs(entry.decode())
    assert parsed["URIs"] == url and "BEGIN PGP PUBLIC KEY BLOCK" in parsed["Signed-By"] and "Trusted" not in parsed
    source_deb = repo / "lvs-apt-source_1.0_all.deb"
    assert deb_file(source_deb, "etc/apt/sources.list.d/lvs-reference.sources", tmp_path) == entry
    conffiles = subprocess.run(["dpkg-deb", "-I", str(source_deb), "conffiles"], capture_output=True, text=True,
                               check=True).stdout.split()
    assert conffiles == ["/etc/apt/sources.list.d/lvs-reference.sources"]
    lintian(source_deb)  # raises on an error or a warning
    for role in ("lvs-director", "lvs-realserver"):  # the role packages leave apt's sources alone
        listing = subprocess.run(["dpkg-deb", "-c", str(repo / f"{role}_1.0_all.deb")], capture_output=True,
                                 text=True, check=True).stdout
        assert "etc/apt/" not in listing


def test_the_spec_s_repository_key_is_the_only_key_build_repo_signs_with(tmp_path: Path,
                                                                        gnupg: dict[str, str]) -> None:
    other = tmp_path / "other-gnupg"
    other.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(other)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "someone else <else@example.org>",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    try:
        foreign = tmp_path / "foreign.asc"
        foreign.write_bytes(subprocess.run(["gpg", "--armor", "--export", "else@example.org"], env=env,
                                           capture_output=True, check=True).stdout)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
    v1, _, key = specs(tmp_path, {"url": "http://192.168.1.10:8080/", "key": foreign.name})
    r = build_repo(tmp_path / "repo", v1, key, "--sign-key", "repo@example.org", env=gnupg)
    assert r.exit_code == 1
    assert re.fullmatch(r"error: build-repo: --sign-key repo@example\.org: [0-9A-F]{40} is not the spec's "
                        r"repository\.key \([0-9A-F]{40}\); the nodes would refuse the repository",
                        r.output.splitlines()[-1]), r.output
    r = build_repo(tmp_path / "repo", v1, key, env=gnupg)
    assert r.exit_code == 1 and "error: build-repo: --sign-key: required" in r.output.splitlines()[-1]
    r = build_repo(tmp_path / "repo", v1, key, "--sign-key", "repo@example.org", "--url", "http://10.0.0.1/",
                   env=gnupg)
    assert r.exit_code == 1 and r.output.splitlines()[-1].startswith(
        "error: build-repo: --url http://10.0.0.1/: the spec's repository.url (http://192.168.1.10:8080/) is what")
    not_a_key = tmp_path / "not-a-key.asc"
    not_a_key.write_text("hello\n")
    v1, _, key = specs(tmp_path, {"url": "http://192.168.1.10:8080/", "key": not_a_key.name})
    r = build_repo(tmp_path / "repo", v1, key, "--sign-key", "repo@example.org", env=gnupg)
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == (f"error: repository.key: {not_a_key}: not an armored OpenPGP public key "
                                         "(gpg --armor --export KEYID writes one)")
    v1, _, key = specs(tmp_path, {"url": "http://192.168.1.10:8080/", "key": "missing.asc"})
    r = build_repo(tmp_path / "repo", v1, key, "--sign-key", "repo@example.org", env=gnupg)
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == (f"error: repository.key: {tmp_path / 'missing.asc'}: cannot read: "
                                         "No such file or directory")
    assert not (tmp_path / "repo").exists()


# -- apt, for real ----------------------------------------------------------------------------

@contextlib.contextmanager
def private_netns() -> Iterator[str]:
    """A network namespace of the test's own: loopback only, no route anywhere; deleted after,
    whatever still runs in it stopped by PID first."""
    name = f"lvs-repo-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_repo_serve_gives_the_director_package_to_the_directors_only(tmp_path: Path, gnupg: dict[str, str]) -> None:
    """In a namespace of the test's own, its loopback holding the provisioning server's address and
    a director's, a real server's and a stranger's: the indexes go to anyone, lvs-director_*.deb
    (the directors' configuration; the keys are in no published package) to the director only;
    no listings, no metadata."""
    if os.geteuid() != 0:
        pytest.fail("the serving test needs root (a network namespace)")
    v1, _, key = specs(tmp_path)
    repo = tmp_path / "repo"
    assert build_repo(repo, v1, key, "--sign-key", "repo@example.org", env=gnupg).exit_code == 0
    server, director, real, stranger = "192.168.1.10", "192.168.1.103", "192.168.1.101", "192.168.1.77"
    port = 8080  # the spec's default URL's
    with private_netns() as ns:
        for a in (server, director, real, stranger):
            subprocess.run(["ip", "-n", ns, "address", "add", f"{a}/32", "dev", "lo"], check=True)
        # no --address, no --port: the URL's (http://192.168.1.10:8080/)
        with serving(repo, None, tmp_path / "serve.log", ns):
            for who in (director, real, stranger):
                assert http_status(ns, server, port, who, "/InRelease") == 200
                assert http_status(ns, server, port, who, "/lvs-realserver_1.0_all.deb") == 200
                assert http_status(ns, server, port, who, "/") == 404            # no listing
                assert http_status(ns, server, port, who, "/.lvs-builder-repo.json") == 404
            assert http_status(ns, server, port, director, "/lvs-director_1.0_all.deb") == 200
            assert http_status(ns, server, port, real, "/lvs-director_1.0_all.deb") == 403
            assert http_status(ns, server, port, stranger, "/lvs-director_1.0_all.deb") == 403
            assert http_status(ns, server, port, stranger, "/%6cvs-director_1.0_all.deb") == 403  # quoted, same file
    log = (tmp_path / "serve.log").read_text()
    assert f"at http://{server}:{port}/ (lvs-director to {director}, 192.168.1.104 only)" in log


@contextlib.contextmanager
def serving(repo: Path, port: int | None, log: Path, netns: str) -> Iterator[None]:
    """`lvs-builder repo serve` on the loopback of a private network namespace, stopped by its PID."""
    with open(log, "w") as out:
        where = [] if port is None else ["--address", "127.0.0.1", "--port", str(port),
                                         "--director", "127.0.0.1"]  # the chroot installs lvs-director
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "builder", "repo", "serve",
                                 "--dir", str(repo), *where],
                                stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while "ready:" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_apt_installs_and_upgrades_from_the_repository(tmp_path: Path, gnupg: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.fail("the repository test needs root (chroot, namespaces)")
    for tool in ("mmdebstrap", "unshare"):
        need_tool(tool)
    from .chroot import Chroot

    port = 8080  # on the namespace's own loopback: nothing else listens there
    url = f"http://127.0.0.1:{port}/"
    # The spec names the repository: lvs-apt-source carries its sources entry.
    v1, v2, key = specs(tmp_path, {"url": url, "key": export_key(gnupg, tmp_path / "repo-key.asc").name})
    repo = tmp_path / "repo"
    assert build_repo(repo, v1, key, "--sign-key", "repo@example.org", env=gnupg).exit_code == 0
    ch = Chroot.create("trixie", tmp_path)
    # What lvs-director needs from Debian's archive, first, over the machine's network; the rest
    # happens in a namespace of the test's own where only the repository is reachable (apt reads
    # only its entry there: the nodes of a cluster need no more).
    needs = [alt.split(" | ")[0] for alt in (*deb.PRE_DEPENDS[Role.DIRECTOR], *deb.DEPENDS[Role.DIRECTOR])
             if alt != Extra.CLUSTER_KEY.package]
    ch.apt("install --no-install-recommends " + " ".join(needs))
    # The cluster's keys: never in the repository; out of band (the image does it so).
    keys = tmp_path / "keys"
    r = CliRunner().invoke(cli, ["build-deb", "cluster-key", "--spec", str(v1), "--authkey-file", str(key),
                                 "--out", str(keys)])
    assert r.exit_code == 0, r.output
    assert not list(repo.glob("lvs-cluster-key_*"))
    shutil.copy(keys / "lvs-cluster-key_1_all.deb", ch.root / "tmp")
    ch.sh("dpkg -i /tmp/lvs-cluster-key_1_all.deb")
    entry = "/etc/apt/sources.list.d/lvs-reference.sources"
    only_ours = f"-o Dir::Etc::SourceList={entry} -o Dir::Etc::SourceParts=-"
    # The first install's bootstrap: the entry from the repository, put in place by hand.
    (ch.root / entry.lstrip("/")).write_bytes((repo / "lvs-reference.sources").read_bytes())
    with private_netns() as ns, serving(repo, port, tmp_path / "serve.log", ns):
        ch.sh(f"apt-get -q {only_ours} update", netns=ns)
        # as the images install them
        ch.sh(f"apt-get -q -y {only_ours} install --no-install-recommends lvs-director lvs-apt-source", netns=ns)
        assert ch.sh("dpkg-query -W -f '${Version}' lvs-director").stdout == "1.0"
        # From now on the entry is lvs-apt-source's (a conffile): the upgrade comes through it.
        assert ch.sh(f"dpkg-query -S {entry}").stdout.startswith("lvs-apt-source: ")
        # The admin edits a conffile; the next version changes it too (deadtime 4).
        ch.sh("sed -i 's/^warntime .*/warntime 2000ms/' /etc/ha.d/ha.cf")
        assert build_repo(repo, v2, key, "--sign-key", "repo@example.org", env=gnupg).exit_code == 0
        ch.sh(f"apt-get -q {only_ours} update", netns=ns)
        ch.sh(f"apt-get -q -y {only_ours} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
              "upgrade", netns=ns)
        assert ch.sh("dpkg-query -W -f '${Version}' lvs-director").stdout == "1.1"
        ha_cf = (ch.root / "etc/ha.d/ha.cf").read_text()
        assert "warntime 2000ms" in ha_cf and "deadtime 2500ms" in ha_cf  # the admin's file, kept
        assert "deadtime 4" in (ch.root / "etc/ha.d/ha.cf.dpkg-dist").read_text()  # the new one, beside it
        # A Release changed after signing: apt refuses the repository.
        inrelease = repo / "InRelease"
        # Its date kept as signed (as if altered within that second): repo serve answers with the
        # file as it is, not "304 Not Modified" to apt's If-Modified-Since.
        signed = inrelease.stat()
        inrelease.write_text(inrelease.read_text().replace("Label: lvs-reference", "Label: lvs-evil"))
        os.utime(inrelease, ns=(signed.st_atime_ns, signed.st_mtime_ns))
        refused = ch.sh(f"apt-get -q {only_ours} update 2>&1", netns=ns, check=False).stdout
        # apt keeps the lists it verified before and says why it took nothing from the repository
        assert re.search(rf"^Err:\d+ {re.escape(url.rstrip('/'))} \./ InRelease$", refused, re.M), refused
        assert "An error occurred during the signature verification" in refused
        assert "lvs-evil" not in ch.sh("cat /var/lib/apt/lists/*InRelease 2>/dev/null || true").stdout


def test_then_scenarios_without_an_upgrade_are_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["lab", "--images", str(tmp_path / "none"), "--then-scenario", "partition"])
    assert r.exit_code == 2
    assert r.output.splitlines()[-1] == "Error: --upgrade-to and --then-scenario go with --upgrade"
    assert not (tmp_path / "none").exists()
