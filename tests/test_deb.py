"""The role packages as dpkg and lintian see them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from debian.debfile import DebFile

from builder import cli as cli_module
from builder.cli import cli

from .conftest import keyed_data_home, need_tool, write_spec

ROLES = ["director", "realserver"]
PACKAGES = [*ROLES, "cluster-key"]  # build-deb director builds lvs-cluster-key beside it


def build(out: Path, *args: str, env: dict[str, str] | None = None) -> list[Path]:
    r = CliRunner().invoke(cli, ["build-deb", *ROLES, "--out", str(out), *args], env=env)
    assert r.exit_code == 0, r.output
    return sorted(out.glob("*.deb"))


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_tool("dpkg-deb")
    out = tmp_path_factory.mktemp("debs")
    env = {"XDG_DATA_HOME": str(keyed_data_home(tmp_path_factory.mktemp("xdg")))}
    paths = build(out, env=env)
    return {p.name.split("_")[0].removeprefix("lvs-"): p for p in paths}


@pytest.mark.parametrize("role", PACKAGES)
def test_lintian_is_clean(debs: dict[str, Path], role: str) -> None:
    need_tool("lintian")
    proc = subprocess.run(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", debs[role]],
                          capture_output=True, text=True)
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert proc.returncode == 0 and tags == [], proc.stdout


@pytest.mark.parametrize("role", PACKAGES)
def test_control_and_conffiles(debs: dict[str, Path], role: str) -> None:
    d = DebFile(str(debs[role]))
    control = d.debcontrol()
    assert control["Package"] == f"lvs-{role}"
    assert control["Version"] == ("1" if role == "cluster-key" else "1.0")  # the key file's serial
    assert control["Architecture"] == "all"
    depends = [alt.strip() for alt in control.get("Depends", "").split(",")]
    assert ("apache2" in depends and "iproute2" in depends) == (role != "cluster-key")
    assert not any("httpd" in d for d in depends)  # our pages are apache2 configuration
    if role == "director":
        # any version of the keys: lvs-cluster-key is never in the repository
        assert {"ipvsadm", "kmod", "lvs-cluster-key"} <= set(depends)
        # configured before our preinst diverts a conffile of each
        assert control["Pre-Depends"] == "heartbeat, ldirectord"
    members = {m.name.removeprefix("./"): m for m in d.data.tgz().getmembers()}
    etc_files = sorted("/" + n for n, m in members.items() if n.startswith("etc/") and m.isfile())
    conffiles = (d.control.get_content("conffiles", encoding="utf-8") or "").split()
    assert sorted(conffiles) == etc_files
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert ("etc/ha.d/authkeys" in members) == (role == "cluster-key")
    if role == "cluster-key":
        assert members["etc/ha.d/authkeys"].mode == 0o600
        assert control["Replaces"] == "lvs-director"  # authkeys moves out of an older lvs-director
    if role == "director":
        assert members["etc/ha.d/resource.d/LVSSyncDaemonSwap"].mode == 0o755


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(keyed_data_home(tmp_path / "xdg"))}
    first = build(tmp_path / "a", env=env)
    second = build(tmp_path / "b", env=env)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    # SOURCE_DATE_EPOCH is honoured: another date, other bytes, again reproducibly.
    env["SOURCE_DATE_EPOCH"] = "1800000000"
    third = build(tmp_path / "c", env=env)
    fourth = build(tmp_path / "d", env=env)
    assert [p.read_bytes() for p in third] == [p.read_bytes() for p in fourth]
    assert third[0].read_bytes() != first[0].read_bytes()
    members = DebFile(str(third[0])).data.tgz().getmembers()
    assert {m.mtime for m in members} == {1800000000}


def test_spec_version_names_the_package(tmp_path: Path, reference: dict[str, Any]) -> None:
    reference["package"]["version"] = "2.3"
    p = write_spec(tmp_path, reference)
    assert CliRunner().invoke(cli, ["keygen", "--spec", str(p)]).exit_code == 0
    paths = build(tmp_path / "out", "--spec", str(p))
    assert [x.name for x in paths] == ["lvs-cluster-key_1_all.deb", "lvs-director_2.3_all.deb",
                                       "lvs-realserver_2.3_all.deb"]


def test_missing_tool_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    r = CliRunner().invoke(cli, ["build-deb", "director", "--out", str(tmp_path / "out")])
    assert r.exit_code == 1
    assert r.output == "error: dpkg-deb (apt-get install dpkg): not found\n"
    assert not (tmp_path / "out").exists()


def test_failed_build_step_leaves_no_half_written_deb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dpkg-deb that writes half a package and dies, as one would on a full disk.
    fake = tmp_path / "bin"
    fake.mkdir()
    script = fake / "dpkg-deb"
    script.write_text('#!/bin/sh\nfor a; do last=$a; done\necho partial > "$last"\necho "No space left" >&2\n'
                      "exit 2\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["build-deb", "director", "--out", str(out)])
    assert r.exit_code == 1
    lines = r.output.splitlines()
    assert lines[0].startswith("error: dpkg-deb --root-owner-group -Zxz --build ") and "failed (exit 2)" in lines[0]
    assert lines[1:] == ["  | No space left"]
    assert not out.exists()  # nothing built: not even the --out it made


def test_build_image_without_its_tools_is_one_line_and_writes_nothing(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli_module.build_image, ["director", "--out", str(out)])
    # (the search adds /usr/sbin:/sbin, where debootstrap lives; qemu-img is in /usr/bin)
    assert (r.exit_code, r.output) == (1, "error: qemu-img (apt-get install qemu-utils): not found\n")
    assert not out.exists()
