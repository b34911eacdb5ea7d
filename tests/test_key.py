"""The cluster key's life: made on purpose (keygen, init), never by a build; each director
package records which key it carries, and a build with another key than the previous package's
is refused unless the operator asks for a key change."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import authkey, deb
from builder.cli import cli

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
    key = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert authkey.fingerprint(key) in r.output and key not in r.output
    r = invoke("keygen", "--spec", str(p))
    assert r.exit_code == 1
    assert r.output.startswith(f"error: {key_file}: a cluster key is there already; keys are never replaced")
    assert key_file.read_text().strip() == key
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
    key = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"wrote the cluster key {key_file} ({authkey.fingerprint(key)})" in r.output
    r = invoke("init", str(p), "--force")
    assert r.exit_code == 0, r.output
    assert f"kept the cluster key {key_file}" in r.output
    assert key_file.read_text().strip() == key


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


def test_the_director_package_records_its_keys_fingerprint_and_is_owner_only(tmp_path: Path) -> None:
    need_tool("dpkg-deb")
    out = tmp_path / "out"
    r = invoke("build-deb", "director", "realserver", "--out", str(out))
    assert r.exit_code == 0, r.output
    key = authkey.read(authkey.default_path(None))
    director = out / "lvs-director_1.0_all.deb"
    assert deb.carried_key(director) == authkey.fingerprint(key)
    assert stat.S_IMODE(director.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "lvs-realserver_1.0_all.deb").stat().st_mode) == 0o644
    assert deb.carried_key(out / "lvs-realserver_1.0_all.deb") is None
    assert key not in authkey.fingerprint(key)


def test_a_build_with_another_key_than_the_previous_package_is_refused_without_key_change(
        tmp_path: Path, reference: dict[str, Any]) -> None:
    need_tool("dpkg-deb")
    out = tmp_path / "out"
    v1 = write_spec(tmp_path, reference, "v1.yaml")
    assert invoke("keygen", "--spec", str(v1)).exit_code == 0
    assert invoke("build-deb", "director", "--spec", str(v1), "--out", str(out)).exit_code == 0
    before = (out / "lvs-director_1.0_all.deb").read_bytes()
    reference["package"]["version"] = "1.1"
    v2 = write_spec(tmp_path, reference, "v2.yaml")
    assert invoke("keygen", "--spec", str(v2)).exit_code == 0  # a new key: someone lost v1's
    old, new = (authkey.fingerprint(authkey.read(authkey.default_path(v))) for v in (v1, v2))
    r = invoke("build-deb", "director", "--spec", str(v2), "--out", str(out))
    assert r.exit_code == 1
    assert r.output == (f"error: {out / 'lvs-director_1.0_all.deb'}: carries cluster key {old}, this build's key "
                        f"is {new}; a director with another key than its peer splits the brain: rotate it "
                        "(README, 'The cluster key') or pass --key-change\n")
    assert director_debs(out) == ["lvs-director_1.0_all.deb"]
    assert (out / "lvs-director_1.0_all.deb").read_bytes() == before
    # The same key for the next version is the normal case; the operator's key change is theirs.
    assert invoke("build-deb", "director", "--spec", str(v2), "--out", str(out),
                  "--authkey-file", str(authkey.default_path(v1))).exit_code == 0
    r = invoke("build-deb", "director", "--spec", str(v2), "--out", str(out), "--key-change")
    assert r.exit_code == 0, r.output
    assert deb.carried_key(out / "lvs-director_1.1_all.deb") == new


def test_build_repo_refuses_another_key_and_keeps_its_copies_out_of_the_system_tmp(
        tmp_path: Path, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    need_tool("dpkg-scanpackages")
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR read again
    repo = tmp_path / "site" / "repo"
    v1 = write_spec(tmp_path, reference, "v1.yaml")
    assert invoke("keygen", "--spec", str(v1)).exit_code == 0
    r = invoke("build-repo", "--spec", str(v1), "--out", str(repo), "--insecure")
    assert r.exit_code == 0, r.output
    reference["package"]["version"] = "1.1"
    v2 = write_spec(tmp_path, reference, "v2.yaml")
    assert invoke("keygen", "--spec", str(v2)).exit_code == 0
    r = invoke("build-repo", "--spec", str(v2), "--out", str(repo), "--insecure")
    assert r.exit_code == 1
    assert f"error: {repo / 'lvs-director_1.0_all.deb'}: carries cluster key" in r.output
    assert director_debs(repo) == ["lvs-director_1.0_all.deb"]
    r = invoke("build-repo", "--spec", str(v2), "--out", str(repo), "--key-change", "--insecure")
    assert r.exit_code == 0, r.output
    assert director_debs(repo) == ["lvs-director_1.0_all.deb", "lvs-director_1.1_all.deb"]
    assert list(system_tmp.iterdir()) == []
    assert sorted(q.name for q in (tmp_path / "site").iterdir()) == ["repo"]
