"""Our LVSSyncDaemonSwap, run for real. This kernel has no IPVS, so only 'no daemon' states are
reachable here; the swap itself is proven in the VM lab."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder import deb, render, spec
from builder.model import Role


def _script(tmp_path: Path) -> Path:
    c, _ = spec.load(None)
    f = render.render(c, Role.DIRECTOR, "0" * 64, epoch=deb.DEFAULT_EPOCH)["etc/ha.d/resource.d/LVSSyncDaemonSwap"]
    p = tmp_path / "LVSSyncDaemonSwap"
    p.write_bytes(f.content)
    p.chmod(f.mode)
    return p


def test_status_without_a_daemon_says_stopped(tmp_path: Path) -> None:
    for state in ("master", "backup"):
        proc = subprocess.run([_script(tmp_path), state, "status"], capture_output=True, text=True)
        assert (proc.returncode, proc.stdout) == (0, f"{state} stopped\n")


def test_bad_arguments_print_usage(tmp_path: Path) -> None:
    for args in ([], ["master"], ["primary", "start"], ["master", "restart"]):
        proc = subprocess.run([_script(tmp_path), *args], capture_output=True, text=True)
        assert proc.returncode == 1
        assert proc.stderr == "usage: LVSSyncDaemonSwap master|backup start|stop|status\n"
