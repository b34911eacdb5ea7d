"""lvs-builder's own Debian package: dpkg-buildpackage -b on a copy of the checkout, lintian's
verdict, and the packaged commands run on Debian's Python modules (not the venv's)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from builder import __version__, deb

from .conftest import REPO, need_tool


def _sources() -> list[str]:
    """The files of the checkout, as a fresh clone has them (git's view when there is one)."""
    if shutil.which("git") and (REPO / ".git").exists():
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout
        return [f for f in out.splitlines() if (REPO / f).is_file()]
    skip = {".venv", "out", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
    return [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()
            and not skip & set(p.relative_to(REPO).parts) and "__pycache__" not in p.parts]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("dpkg-buildpackage", "dh", "dh_python3", "lintian"):
        need_tool(tool)
    top = tmp_path_factory.mktemp("selfpackage")
    src = top / "lvs-builder"
    for rel in _sources():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    proc = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return top / f"lvs-builder_{__version__}_all.deb"


def test_the_changelog_names_the_programs_version() -> None:
    need_tool("dpkg-parsechangelog")
    version = subprocess.run(["dpkg-parsechangelog", "-l", str(REPO / "debian" / "changelog"), "-S", "Version"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == __version__


def test_package_is_lintian_clean(package: Path) -> None:
    verdict = deb.lintian(package)  # ToolError on any error or warning
    assert not [line for line in verdict.splitlines() if line.startswith(("E:", "W:"))]


def test_packaged_commands_run_on_debians_python(package: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(package), str(root)], check=True)
    files = subprocess.run(["dpkg-deb", "-c", str(package)], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/share/lvs-builder/overlays/director/etc/ha.d/haresources.j2",
                 "./usr/share/lvs-builder/elements/lvs-director/install.d/70-lvs-director",
                 "./usr/share/lvs-builder/builder/data/reference.yaml", "./usr/share/man/man1/lvs-builder.1.gz"):
        assert path in files
    assert "__pycache__" not in files

    def packaged(*args: str) -> subprocess.CompletedProcess[str]:
        # /usr/bin/python3 with Debian's python3-click, -jinja2, -yaml and -debian: the package's Depends
        return subprocess.run(["/usr/bin/python3", str(root / "usr/bin" / args[0]), *args[1:]],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                                   "XDG_DATA_HOME": str(tmp_path / "xdg")})

    assert packaged("lvs-builder", "--version").stdout.strip().endswith(__version__)
    assert packaged("lvs-builder", "validate").returncode == 0
    assert packaged("lvs-builder", "keygen").returncode == 0
    r = packaged("lvs-builder", "render", "director", "--out", str(tmp_path / "rendered"))
    assert r.returncode == 0, r.stderr
    haresources = (tmp_path / "rendered" / "etc/ha.d/haresources").read_text()
    assert "loadb1 LVSSyncDaemonSwap::master LVSVip::192.168.1.105/24/eth0/192.168.1.255" in haresources
    r = packaged("build-deb", "realserver", "--out", str(tmp_path / "debs"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "debs" / "lvs-realserver_1.0_all.deb").exists()
