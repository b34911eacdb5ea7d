"""Linters as tests: ruff and mypy on the package, shellcheck on every shell script we ship."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder import authkey, deb, render, spec
from builder.model import Extra, Role

from .conftest import REPO, need_tool

# Python programs that land on nodes (stdlib only, the node's python3).
PYTHON_OVERLAYS = ["overlays/director/usr/sbin/lvs-cluster-check"]
BENCH = ["bench/run", "bench/build-deb"]  # Python scripts without a .py suffix


def _shell_scripts(tmp_path: Path) -> list[Path]:
    """Every rendered file that starts with a shell shebang, maintainer scripts included."""
    c, _ = spec.load(None)
    out = []
    ring = authkey.Ring(1, 1, ((1, "0" * 64),))
    for role in [*Role, Extra.CLUSTER_KEY]:
        key = ring if role is Extra.CLUSTER_KEY else None
        files = render.render(c, role, key, epoch=deb.DEFAULT_EPOCH)
        files.update({f"DEBIAN/{k}": v for k, v in render.render_control(c, role, key).items()})
        for rel, f in files.items():
            if f.content.startswith((b"#!/bin/sh", b"#!/bin/bash")):
                p = tmp_path / role.value / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(f.content)
                out.append(p)
    out += [p for p in (REPO / ".ci").iterdir() if p.read_bytes().startswith(b"#!")]
    out += [p for p in REPO.glob("*.sh")]
    out += [p for elements in (REPO / "elements", REPO / "bench" / "keepalived") for p in elements.rglob("*")
            if p.is_file() and p.read_bytes().startswith(b"#!")]
    return out


def test_shellcheck(tmp_path: Path) -> None:
    need_tool("shellcheck")
    scripts = _shell_scripts(tmp_path)
    assert len(scripts) >= 8
    proc = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("tool", [["ruff", "check"], ["mypy"]], ids=["ruff", "mypy"])
def test_python_linters(tool: list[str]) -> None:
    # mypy names every script without a .py suffix __main__: one script a run
    runs = [[*PYTHON_OVERLAYS, *BENCH]] if tool[0] == "ruff" else [[script] for script in BENCH]
    for paths in [["builder", "tests", *PYTHON_OVERLAYS], *runs]:
        proc = subprocess.run([sys.executable, "-m", *tool, *paths], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
