"""Output directories and faults: lvs-builder never removes what it did not write, gives one
line for a bad input or a fault, and a signal mid-build leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.writer import MARKER

LVS_BUILDER = [sys.executable, "-m", "builder"]


def foreign(out: Path) -> None:
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine\n")
    (out / "sub" / "thesis.tex").write_text("\\section{mine}\n")


def untouched(out: Path) -> bool:
    return ((out / "notes.txt").read_text() == "mine\n"
            and (out / "sub" / "thesis.tex").read_text() == "\\section{mine}\n")


COMMANDS = {
    "render": ["render", "director"],
    "build-repo": ["build-repo", "--insecure"],
    "build-pxe": ["build-pxe", "--no-build", "--images"],  # refused before it looks for images
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_foreign_output_directory_is_refused_and_untouched(tmp_path: Path, command: str) -> None:
    out = tmp_path / "out"
    foreign(out)
    args = COMMANDS[command] + ([str(tmp_path / "images")] if command == "build-pxe" else [])
    r = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert r.output.splitlines()[-1] == (
        f"error: {out}: not empty and not made by lvs-builder (no {MARKER} in it); give a new or empty directory, "
        "or --force to write beside what is there (lvs-builder never removes what it did not write)")
    assert untouched(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left beside it


@pytest.mark.parametrize("command", ["render", "build-repo"])
def test_force_writes_beside_a_users_files_and_later_builds_keep_them(tmp_path: Path, command: str) -> None:
    out = tmp_path / "out"
    foreign(out)
    r = CliRunner().invoke(cli, [*COMMANDS[command], "--out", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert untouched(out)
    ours = (out / MARKER).read_text().splitlines()
    assert "notes.txt" not in ours and "sub/thesis.tex" not in ours
    assert any(line.startswith(("etc/", "Packages")) for line in ours)
    (out / "later.txt").write_text("also mine\n")
    r = CliRunner().invoke(cli, [*COMMANDS[command], "--out", str(out)])  # ours now: no --force needed
    assert r.exit_code == 0, r.output
    assert untouched(out) and (out / "later.txt").read_text() == "also mine\n"


def test_a_users_file_where_ours_goes_is_refused_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "etc" / "ha.d").mkdir(parents=True)
    (out / "etc" / "ha.d" / "ha.cf").write_text("my own ha.cf\n")
    r = CliRunner().invoke(cli, ["render", "director", "--out", str(out), "--force"])
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == (
        f"error: {out}/etc/ha.d/ha.cf: not written by lvs-builder, and it would replace it with etc/ha.d/ha.cf; "
        "move it away, then build again")
    assert (out / "etc" / "ha.d" / "ha.cf").read_text() == "my own ha.cf\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("args,expected", [
    (["repo", "serve", "--dir", ".", "--port", "99999"], "99999 is not in the range 1<=x<=65535"),
    (["validate", "--spec", "/dev/zero"], "error: /dev/zero: a device, not a regular file; give the spec as a file"),
])
def test_bad_arguments_are_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    r = subprocess.run([*LVS_BUILDER, *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("text,expected", [
    ("name: " + "9" * 5000 + "\n", "error: spec: a number of more than 4300 digits"),
    ("name: " + "[" * 3000 + "]" * 3000 + "\n", "error: spec: not valid YAML here: nested too deep"),
])
def test_pathological_yaml_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    r = subprocess.run([*LVS_BUILDER, "validate", "--spec", str(spec)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (2, expected + "\n")


def test_a_spec_through_a_pipe_or_too_large_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = subprocess.run([*LVS_BUILDER, "validate", "--spec", str(fifo)], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stderr) == (2, f"error: {fifo}: a pipe, not a regular file; give the spec as a file\n")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (2 << 20))
    r = subprocess.run([*LVS_BUILDER, "validate", "--spec", str(big)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (2, f"error: {big}: larger than 1024 KiB; a spec is a few KB\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_build_leaves_nothing_and_stops_the_tool(tmp_path: Path, signum: int) -> None:
    # The real build, stopped while its second package is in dpkg-deb: a dpkg-deb that waits
    # (and says so) stands in for a slow one; the real one builds the first.
    fake = tmp_path / "bin"
    fake.mkdir()
    started, child = tmp_path / "started", tmp_path / "child-pid"
    real = subprocess.run(["sh", "-c", "command -v dpkg-deb"], capture_output=True, text=True).stdout.strip()
    (fake / "dpkg-deb").write_text(
        f'#!/bin/sh\ncase "$*" in *lvs-realserver*) echo $$ > {child}; touch {started}; exec sleep 60;; esac\n'
        f'exec {real} "$@"\n')
    (fake / "dpkg-deb").chmod(0o755)
    out = tmp_path / "out"
    proc = subprocess.Popen([*LVS_BUILDER, "build-deb", "director", "realserver", "--out", str(out)],
                            env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum
    assert stderr == f"error: stopped by {signal.Signals(signum).name}; what was being built was removed\n"
    assert not out.exists()  # all or nothing: not even the director's package, nor the --out it made
    pid = int(child.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system with 96 KiB: less than the director's packages need."""
    if os.geteuid() != 0:
        pytest.fail("a small file system to fill needs root (mount)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_disk_is_one_line_naming_the_directory_and_leaves_nothing(small_disk: Path) -> None:
    out = small_disk / "out"
    build_deb = [sys.executable, "-c", "from builder.cli import build_deb_main; build_deb_main()"]
    r = subprocess.run([*build_deb, "director", "--out", str(out)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (
        1, f"error: {out}: No space left on device (writing lvs-director_1.0_all.deb)\n"), r.stderr
    assert list(small_disk.iterdir()) == []  # not even the --out it made
