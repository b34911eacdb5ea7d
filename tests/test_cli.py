from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

from click.testing import CliRunner

from builder import spec
from builder.cli import cli


def test_init_writes_a_commented_starter_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    r = CliRunner().invoke(cli, ["init", str(target)])
    assert r.exit_code == 0, r.output
    text = target.read_text()
    assert text == spec.reference_text() and text.count("\n#") >= 3
    r = CliRunner().invoke(cli, ["validate", "--spec", str(target)])
    assert r.exit_code == 0 and r.output.startswith(f"ok: {target}: cluster reference (trixie)")
    r = CliRunner().invoke(cli, ["init", str(target)])
    assert (r.exit_code, r.output) == (1, f"error: {target}: exists; pass --force to overwrite\n")


def test_show_fills_defaults_and_release_override(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["show"])
    assert r.exit_code == 0
    assert "syncid: 0" in r.output and "release: trixie" in r.output
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["build-deb", "realserver", "--release", "bookworm", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(out / "lvs-realserver_1.0_all.deb")],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        member = t.extractfile("./usr/share/doc/lvs-realserver/changelog.gz")
        assert member is not None
        assert gzip.decompress(member.read()).decode().startswith("lvs-realserver (1.0) bookworm; urgency=medium")


def test_build_image_answers_uefi_with_the_layout_that_boots_it(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["build-image", "director", "--firmware", "uefi", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert r.output.splitlines()[-1] == ("Error: Invalid value for '--firmware': 'uefi': take hybrid (the default), "
                                         "which boots on UEFI, Secure Boot on, and on BIOS; there is no UEFI-only "
                                         "layout")
    assert not (tmp_path / "out").exists()
