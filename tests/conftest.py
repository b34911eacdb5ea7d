from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import spec

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden from the renderer")


def keyed_data_home(path: Path) -> Path:
    """`path` as an XDG_DATA_HOME holding the built-in reference cluster's key, made the way an
    operator makes it (`lvs-builder keygen`): builds read a key, they never create one."""
    from click.testing import CliRunner

    from builder.cli import cli

    path.mkdir(parents=True, exist_ok=True)
    r = CliRunner().invoke(cli, ["keygen"], env={"XDG_DATA_HOME": str(path)})
    assert r.exit_code == 0, r.output
    return path


@pytest.fixture(scope="module")
def role_debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference cluster's packages (lvs-director, lvs-realserver, lvs-cluster-key) as
    build-deb makes them, by package name: what the install and piuparts tests install."""
    from click.testing import CliRunner

    from builder.cli import cli

    out = tmp_path_factory.mktemp("debs")
    r = CliRunner().invoke(cli, ["build-deb", "director", "realserver", "--out", str(out)],
                           env={"XDG_DATA_HOME": str(keyed_data_home(tmp_path_factory.mktemp("xdg")))})
    assert r.exit_code == 0, r.output
    return {p.name.split("_")[0]: p for p in out.glob("*.deb")}


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in spec keeps its key in the user's data dir: never the real one in tests; each
    test's has a key of its own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(keyed_data_home(tmp_path_factory.mktemp("xdg-data"))))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def printer(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Print past pytest's capture: figures (sizes, boot times, the lab's report) belong in the CI log."""
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")

    def say(text: str) -> None:
        with capman.global_and_fixture_disabled():
            print(text, flush=True)
    return say


@pytest.fixture
def show(pytestconfig: pytest.Config) -> Callable[[str], None]:
    return printer(pytestconfig)


@pytest.fixture
def reference() -> dict[str, Any]:
    """The reference spec as plain data, to mutate."""
    return copy.deepcopy(spec.parse(spec.reference_text()))


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


_HEAD = """
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), source_address=(sys.argv[3], 0), timeout=10)
c.request("HEAD", sys.argv[4])
print(c.getresponse().status)
"""


def http_status(netns: str, server: str, port: int | str, source: str, path: str) -> int:
    """The status `server` answers a HEAD of `path` with, asked from local address `source` by a
    client inside network namespace `netns` (one the test made)."""
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _HEAD, server, str(port), source, path],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def need_tool(name: str) -> None:
    if shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        pytest.fail(f"{name} is not installed: run ./setup.sh (it installs every tool the tests use)")


def write_spec(tmp_path: Path, data: Any, name: str = "cluster.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return p


@dataclass(frozen=True)
class BuiltImages:
    out: Path        # both role images and their .debs, as build-image leaves them
    data_home: Path  # XDG_DATA_HOME they were built with: the reference cluster's key


@pytest.fixture(scope="session")
def built_images(tmp_path_factory: pytest.TempPathFactory) -> BuiltImages:
    """Both role images of the reference cluster, built once per test run by `build-image`
    (its default firmware: hybrid, UEFI with Secure Boot and BIOS)."""
    from click.testing import CliRunner

    from builder.cli import cli

    if os.geteuid() != 0:
        pytest.fail("image builds need root (loop devices, chroot)")
    for tool in ("qemu-system-x86_64", "qemu-img", "debootstrap"):
        need_tool(tool)
    out = tmp_path_factory.mktemp("images")
    data_home = keyed_data_home(tmp_path_factory.mktemp("images-xdg"))
    env = {"XDG_DATA_HOME": str(data_home)}
    for role in ("director", "realserver"):
        r = CliRunner().invoke(cli, ["build-image", role, "--out", str(out)], env=env)
        assert r.exit_code == 0, r.output
        assert f"built {out}/lvs-{role}-trixie.qcow2" in r.stdout
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".log")) == [
        "lvs-cluster-key_1_all.deb", "lvs-director-trixie.initrd", "lvs-director-trixie.qcow2",
        "lvs-director-trixie.qcow2.firmware", "lvs-director-trixie.vmlinuz", "lvs-director_1.0_all.deb",
        "lvs-realserver-trixie.initrd", "lvs-realserver-trixie.qcow2", "lvs-realserver-trixie.qcow2.firmware",
        "lvs-realserver-trixie.vmlinuz", "lvs-realserver_1.0_all.deb"]
    return BuiltImages(out, data_home)


@dataclass(frozen=True)
class PxeTree:
    tree: Path      # what `build-pxe` made from the built images
    images: Path
    seconds: float  # how long build-pxe took


@pytest.fixture(scope="session")
def pxe_tree(built_images: BuiltImages, tmp_path_factory: pytest.TempPathFactory) -> PxeTree:
    """The reference cluster's PXE tree, made once per test run by `build-pxe`."""
    import time

    from click.testing import CliRunner

    from builder.cli import cli

    for tool in ("mksquashfs", "unsquashfs", "dnsmasq"):
        need_tool(tool)
    out = tmp_path_factory.mktemp("pxe") / "tree"
    start = time.monotonic()
    r = CliRunner().invoke(cli, ["build-pxe", "--out", str(out), "--images", str(built_images.out), "--no-build"],
                           env={"XDG_DATA_HOME": str(built_images.data_home)})
    assert r.exit_code == 0, r.output
    assert f"built {out}" in r.stdout
    return PxeTree(out, built_images.out, time.monotonic() - start)
