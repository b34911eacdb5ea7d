"""The cluster key's life: made on purpose (keygen, init), never by a build; in lvs-cluster-key
alone, which records which keys it carries; a build whose keys the directors running the
previous lvs-cluster-key could not authenticate is refused unless the operator asks for a key
change; a rotation (rotate-key add, sign, drop) passes one step at a time; no build-repo
output and no world-readable file under out/ holds a key."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import authkey, deb, repo
from builder.cli import cli
from builder.errors import BuilderError

from .conftest import need_tool, write_spec


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


def director_debs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("lvs-director_*.deb"))


def test_keygen_makes_one_owner_only_key_and_never_replaces_it(tmp_path: Path, reference: dict[str, Any]) -> None:
    p = write_spec(tmp_path, reference)
    key_file = tmp_path / "cluster.authkey"
    r = invoke("keygen", "--spec", str(p))
    assert r.exit_code == 0, r.output
    key = authkey.read(key_file).signing
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert authkey.fingerprint(key) in r.output and key not in r.output
    before = key_file.read_bytes()
    r = invoke("keygen", "--spec", str(p))
    assert r.exit_code == 1
    assert r.output.startswith(f"error: {key_file}: a cluster key is there already; keys are never replaced")
    assert key_file.read_bytes() == before
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted([p.name, key_file.name])


def test_keygen_where_no_file_can_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("mine\n")
    r = invoke("keygen", "--authkey-file", str(blocker / "k"))
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert r.output.startswith(f"error: {blocker / 'k'}: cannot create the cluster key")
    assert blocker.read_text() == "mine\n"


def test_init_writes_the_new_clusters_key_beside_the_spec_and_keeps_an_existing_one(tmp_path: Path) -> None:
    p = tmp_path / "cluster.yaml"
    r = invoke("init", str(p))
    assert r.exit_code == 0, r.output
    key_file = tmp_path / "cluster.authkey"
    key = authkey.read(key_file).signing
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"wrote the cluster key {key_file} ({authkey.fingerprint(key)})" in r.output
    r = invoke("init", str(p), "--force")
    assert r.exit_code == 0, r.output
    assert f"kept the cluster key {key_file}" in r.output
    assert authkey.read(key_file).signing == key


def test_a_copied_spec_without_its_key_makes_no_package_and_no_key(tmp_path: Path, reference: dict[str, Any]) -> None:
    need_tool("dpkg-deb")
    here = tmp_path / "here"
    here.mkdir()
    p = write_spec(here, reference)
    assert invoke("keygen", "--spec", str(p)).exit_code == 0
    there = tmp_path / "there"
    there.mkdir()
    copied = Path(shutil.copy(p, there / "cluster.yaml"))
    out = tmp_path / "out"
    r = invoke("build-deb", "director", "realserver", "--spec", str(copied), "--out", str(out))
    assert r.exit_code == 1
    assert r.output == (f"error: {there / 'cluster.authkey'}: no cluster key; create it once with: "
                        f"lvs-builder keygen --spec {copied} (a build never makes one: a director with a new key "
                        "splits the brain)\n")
    assert sorted(q.name for q in there.iterdir()) == ["cluster.yaml"]
    assert not out.exists()


def test_a_spec_that_is_not_a_regular_file_needs_authkey_file(tmp_path: Path, reference: dict[str, Any]) -> None:
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    r = invoke("keygen", "--spec", str(fifo))
    assert r.exit_code == 1
    assert r.output == (f"error: --spec {fifo}: not a regular file, so no cluster key can live beside it; "
                        "name the key with --authkey-file\n")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["spec.fifo"]


def test_a_key_file_of_an_earlier_lvs_builder_is_read_as_serial_1(tmp_path: Path) -> None:
    old = tmp_path / "old.authkey"
    old.write_text("ab" * 32 + "\n")
    old.chmod(0o600)
    assert authkey.read(old) == authkey.Ring(1, 1, ((1, "ab" * 32),))
    bad = tmp_path / "bad.authkey"
    bad.write_text("serial 1\nauth 2\n1 " + "ab" * 32 + "\n")
    bad.chmod(0o600)
    with pytest.raises(BuilderError, match="not a cluster key file"):
        authkey.read(bad)


def test_the_keys_are_in_lvs_cluster_key_alone_which_records_them_and_is_owner_only(tmp_path: Path) -> None:
    need_tool("dpkg-deb")
    out = tmp_path / "out"
    r = invoke("build-deb", "director", "realserver", "--out", str(out))
    assert r.exit_code == 0, r.output
    ring = authkey.read(authkey.default_path(None))
    keys = out / "lvs-cluster-key_1_all.deb"
    assert f"built {keys}" in r.output
    assert deb.carried_keys(keys) == authkey.record_of(ring)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    for name in ("lvs-director_1.0_all.deb", "lvs-realserver_1.0_all.deb"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
        assert deb.carried_keys(out / name) is None and not deb.carries_key_file(out / name)
        assert ring.signing.encode() not in unpacked(out / name, tmp_path / name)
    assert ring.signing not in authkey.fingerprint(ring.signing)


def unpacked(package: Path, where: Path) -> bytes:
    """Every byte of a package, its data and control members unpacked."""
    where.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-R", str(package), str(where)], check=True)
    return b"".join(f.read_bytes() for f in sorted(where.rglob("*")) if f.is_file())


def test_a_build_with_keys_the_running_directors_cannot_authenticate_is_refused_without_key_change(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    need_tool("dpkg-deb")
    out = tmp_path / "out"
    v1 = write_spec(tmp_path, reference, "v1.yaml")
    assert invoke("keygen", "--spec", str(v1)).exit_code == 0
    assert invoke("build-deb", "director", "--spec", str(v1), "--out", str(out)).exit_code == 0
    before = (out / "lvs-cluster-key_1_all.deb").read_bytes()
    reference["package"]["version"] = "1.1"
    v2 = write_spec(tmp_path, reference, "v2.yaml")
    assert invoke("keygen", "--spec", str(v2)).exit_code == 0  # a new key: someone lost v1's
    old, new = (authkey.fingerprint(authkey.read(authkey.default_path(v)).signing) for v in (v1, v2))
    r = invoke("build-deb", "director", "--spec", str(v2), "--out", str(out))
    assert r.exit_code == 1
    assert r.output == (f"error: {out / 'lvs-cluster-key_1_all.deb'}: signs with cluster key {old}, this build's "
                        f"keys are serial 1, signing {new}; a director with the one and its peer with the other "
                        "cannot authenticate each other (split brain): rotate the key one step at a time (README, "
                        "'The cluster key') or pass --key-change\n")
    assert sorted(q.name for q in out.iterdir()) == ["lvs-cluster-key_1_all.deb", "lvs-director_1.0_all.deb"]
    assert (out / "lvs-cluster-key_1_all.deb").read_bytes() == before
    # The same key for the next version is the normal case; the operator's key change is theirs.
    assert invoke("build-deb", "director", "--spec", str(v2), "--out", str(out),
                  "--authkey-file", str(authkey.default_path(v1))).exit_code == 0
    r = invoke("build-deb", "director", "--spec", str(v2), "--out", str(out), "--key-change")
    assert r.exit_code == 0, r.output
    assert deb.carried_keys(out / "lvs-cluster-key_1_all.deb") == authkey.Record(new, frozenset([new]))


def test_a_rotation_passes_one_step_at_a_time_and_a_skipped_step_is_refused(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    need_tool("dpkg-deb")
    out = tmp_path / "out"
    p = write_spec(tmp_path, reference)
    key_file = authkey.default_path(p)
    assert invoke("keygen", "--spec", str(p)).exit_code == 0
    assert invoke("build-deb", "director", "--spec", str(p), "--out", str(out)).exit_code == 0
    old = authkey.read(key_file).signing
    r = invoke("rotate-key", "drop", "--spec", str(p))
    assert r.output == "error: rotate-key drop: no rotation is under way (one key); start one: rotate-key add\n"
    r = invoke("rotate-key", "add", "--spec", str(p))
    assert r.exit_code == 0, r.output
    ring = authkey.read(key_file)
    new = ring.keys[-1][1]
    assert ring.serial == 2 and ring.signing == old and [i for i, _ in ring.keys] == [1, 2]
    assert new not in r.output and authkey.fingerprint(new) in r.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    r = invoke("rotate-key", "drop", "--spec", str(p))
    assert r.output == "error: rotate-key drop: the old key still signs; first: rotate-key sign\n"
    assert invoke("build-deb", "cluster-key", "--spec", str(p), "--out", str(out)).exit_code == 0
    assert invoke("rotate-key", "sign", "--spec", str(p)).exit_code == 0
    assert authkey.read(key_file).signing == new
    # sign is built and installed on both directors before drop: building drop's package right
    # after add's skips a step (a director on add signs with the old key, one on drop rejects it).
    assert invoke("rotate-key", "drop", "--spec", str(p)).exit_code == 0
    r = invoke("build-deb", "cluster-key", "--spec", str(p), "--out", str(out))
    assert r.exit_code == 1 and "lvs-cluster-key_2_all.deb: signs with cluster key" in r.output, r.output
    assert not (out / "lvs-cluster-key_4_all.deb").exists()
    # One step at a time, every build passes.
    key_file.write_text(authkey.Ring(3, 2, ((1, old), (2, new))).text())
    assert invoke("build-deb", "cluster-key", "--spec", str(p), "--out", str(out)).exit_code == 0
    assert invoke("rotate-key", "drop", "--spec", str(p)).exit_code == 0
    assert invoke("build-deb", "cluster-key", "--spec", str(p), "--out", str(out)).exit_code == 0
    assert sorted(q.name for q in out.glob("lvs-cluster-key_*")) == [f"lvs-cluster-key_{n}_all.deb" for n in "1234"]
    assert deb.carried_keys(out / "lvs-cluster-key_4_all.deb") == authkey.Record(
        authkey.fingerprint(new), frozenset([authkey.fingerprint(new)]))
    assert old not in key_file.read_text()


def test_no_build_repo_output_and_no_world_readable_file_under_out_holds_a_key(
        tmp_path: Path, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    need_tool("dpkg-scanpackages")
    need_tool("gpg")
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR read again
    reference["repository"] = {"url": "http://192.168.1.10:8080/"}
    p = write_spec(tmp_path, reference)
    assert invoke("keygen", "--spec", str(p)).exit_code == 0
    key = authkey.read(authkey.default_path(p)).signing
    site = tmp_path / "site"
    repo_dir = site / "repo"
    with tempfile.TemporaryDirectory(prefix="lvs-gpg-", dir="/tmp") as home, \
            repo.throwaway_key(Path(home) / "gnupg", "throw-away <t@example.invalid>") as sign_key:
        r = invoke("build-repo", "--spec", str(p), "--out", str(repo_dir), "--sign-key", sign_key)
    assert r.exit_code == 0, r.output
    published = sorted(q.name for q in repo_dir.glob("*.deb"))
    assert published == ["lvs-apt-source_1.0_all.deb", "lvs-director_1.0_all.deb", "lvs-realserver_1.0_all.deb"]
    everything = b"".join(f.read_bytes() for f in sorted(repo_dir.rglob("*")) if f.is_file())
    everything += b"".join(unpacked(repo_dir / name, tmp_path / "unpacked" / name) for name in published)
    assert key.encode() not in everything and (repo_dir / "InRelease").exists()
    assert list(system_tmp.iterdir()) == [] and sorted(q.name for q in site.iterdir()) == ["repo"]
    # out/: the director's packages; whatever holds the key is its owner's only.
    out = tmp_path / "out"
    r = invoke("build-deb", "director", "realserver", "apt-source", "--spec", str(p), "--out", str(out))
    assert r.exit_code == 0, r.output
    for f in out.rglob("*"):
        if f.is_file() and f.stat().st_mode & 0o044:
            assert key.encode() not in unpacked(f, tmp_path / "u" / f.name), f
        elif f.is_file():
            assert f.name == "lvs-cluster-key_1_all.deb"
    # A package that holds the keys is never published, even if someone puts it there.
    (repo_dir / "lvs-cluster-key_1_all.deb").write_bytes((out / "lvs-cluster-key_1_all.deb").read_bytes())
    r = invoke("build-repo", "--spec", str(p), "--out", str(repo_dir), "--insecure")
    assert r.exit_code == 1, r.output
    assert f"\nerror: build-repo: {repo_dir / 'lvs-cluster-key_1_all.deb'}: carries the cluster's heartbeat keys" \
        in r.output
