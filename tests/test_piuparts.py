"""piuparts, Debian's own install/remove/purge checker, on both role packages in trixie and
bookworm: installed (with the archive's dependencies, as apt installs ./x.deb), removed and
purged, the system after purge compared with the one before. Its verdict is the test's.

Full tier: the four runs take ~12 min (each installs heartbeat, ldirectord and apache2 into a
fresh chroot), more than CI's budget has room for; tests/test_install.py checks the same
packages' install, remove and purge in CI, piuparts' way (the system before equals the
system after). `./setup.sh test -m full -k piuparts`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.mirror import debian_mirror
from builder.run import run

from .chroot import piuparts_base
from .conftest import keyed_data_home, need_tool

pytestmark = [pytest.mark.slow, pytest.mark.full]


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("debs")
    r = CliRunner().invoke(cli, ["build-deb", "director", "realserver", "--out", str(out)],
                           env={"XDG_DATA_HOME": str(keyed_data_home(tmp_path_factory.mktemp("xdg")))})
    assert r.exit_code == 0, r.output
    return {p.name.split("_")[0]: p for p in out.glob("*.deb")}


@pytest.mark.parametrize("release", ["trixie", "bookworm"])
@pytest.mark.parametrize("role", ["director", "realserver"])
def test_piuparts_passes(role: str, release: str, debs: dict[str, Path], tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("piuparts needs root")
    need_tool("piuparts")
    # lvs-director needs its keys' package beside it, as an operator installs them
    files = [debs["lvs-cluster-key"], debs["lvs-director"]] if role == "director" else [debs["lvs-realserver"]]
    log = tmp_path / "piuparts.log"
    # --warn-on-others: what heartbeat, ldirectord or apache2 leave behind when apt purges them
    # is theirs, not ours (piuparts still fails on any file of ours). No upgrade test: the
    # archive has no earlier lvs-director to upgrade from.
    proc = run(["piuparts", "--distribution", release, "--mirror", debian_mirror(),
                "--basetgz", piuparts_base(release), "--no-upgrade-test", "--warn-on-others",
                "--log-file", log, *files], check=False)
    text = log.read_text() if log.exists() else proc.stdout
    assert proc.returncode == 0 and "PASS: All tests." in text, text[-6000:]
