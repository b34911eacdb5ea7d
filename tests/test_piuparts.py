"""piuparts, Debian's own install/remove/purge checker, on both role packages in trixie and
bookworm: installed (with the archive's dependencies, as apt installs ./x.deb), removed and
purged, the system after purge compared with the one before. Its verdict is the test's.

Slow tier, in CI: the four runs take about 90 s with the archive's packages cached by the
chroot tests (`~/.cache/lvs-builder`), each installing heartbeat, ldirectord and apache2 into a
fresh chroot. Alone: `./setup.sh test tests/test_piuparts.py`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from builder.mirror import debian_mirror
from builder.run import run

from .chroot import piuparts_base
from .conftest import need_tool

pytestmark = pytest.mark.slow


# bookworm's runs in the full tier: CI's 50 minutes (the chroot tests install, remove and purge
# both packages on bookworm in CI all the same)
@pytest.mark.parametrize("release", ["trixie", pytest.param("bookworm", marks=pytest.mark.full)])
@pytest.mark.parametrize("role", ["director", "realserver"])
def test_piuparts_passes(role: str, release: str, role_debs: dict[str, Path], tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("piuparts needs root")
    need_tool("piuparts")
    # lvs-director needs its keys' package beside it, as an operator installs them
    files = ([role_debs["lvs-cluster-key"], role_debs["lvs-director"]] if role == "director"
             else [role_debs["lvs-realserver"]])
    # A local repository of them (dpkg-scanpackages), bind-mounted into piuparts' chroot: apt
    # installs them by name from it and the rest from the archive (with .deb files alone,
    # piuparts looks for lvs-director's Depends: lvs-cluster-key in the archive).
    repo = tmp_path / "repo"
    repo.mkdir()
    for f in files:
        shutil.copy(f, repo / f.name)
    (repo / "Packages").write_text(run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo,
                                       merge_stderr=False).stdout)
    log = tmp_path / "piuparts.log"
    # --warn-on-others: what heartbeat, ldirectord or apache2 leave behind when apt purges them
    # is theirs, not ours (piuparts still fails on any file of ours). No upgrade test: the
    # archive has no earlier lvs-director to upgrade from.
    proc = run(["piuparts", "--distribution", release, "--mirror", debian_mirror(),
                "--basetgz", piuparts_base(release), "--no-upgrade-test", "--warn-on-others",
                "--bindmount", repo, "--testdebs-repo", repo,
                "--log-file", log, *(repo / f.name for f in files)], check=False)
    text = log.read_text() if log.exists() else proc.stdout
    assert proc.returncode == 0 and "PASS: All tests." in text, text[-6000:]
