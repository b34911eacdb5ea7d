"""The long download held across a director failover, the reason the tutorial runs the IPVS
sync daemon: a file on every real server, read through the VIP at a fixed rate by a second
client, found in the standby's IPVS table (synced) before the failure, checked whole after."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..netns import Netns
from ..qemu import GuestResult
from .report import Row
from .traffic import (
    TRANSFER_LINES,
    TRANSFER_PATH,
    TRANSFER_RATE,
    TRANSFER_TIMEOUT,
    Service,
    read_jsonl,
    transfer_expected,
    transfer_problems,
)

POLL = 1.0


class Host(Protocol):
    """What the download needs of the lab (cluster.Lab)."""
    @property
    def reals(self) -> list[Any]: ...
    @property
    def services(self) -> list[Service]: ...
    @property
    def workdir(self) -> Path: ...
    @property
    def netns(self) -> Netns: ...
    @property
    def progress(self) -> Callable[[str], None]: ...
    def sh(self, n: Any, script: str, timeout: float = 60) -> GuestResult | None: ...
    def spawn(self, argv: list[str], logname: str) -> subprocess.Popen[bytes]: ...


@dataclass
class Download:
    proc: subprocess.Popen[bytes]
    log: Path
    size: int
    sha256: str
    port: int | None = None
    synced_to: str | None = None   # the standby whose IPVS table held the connection before the failure

    def finish(self, row: Row, t_fail: float) -> list[str]:
        """Wait for the download's end; it must be whole (size and checksum) and have gone on
        past the failure."""
        try:
            self.proc.wait(TRANSFER_TIMEOUT + self.size / TRANSFER_RATE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        done = next((e for e in read_jsonl(self.log) if e.get("event") == "done"), None)
        row.transfer = {"bytes_expected": self.size, "sha256_expected": self.sha256, "synced_to": self.synced_to,
                        **({k: done.get(k) for k in ("ok", "bytes", "sha256", "error")} if done else {}),
                        "ended_after_failure_s": done["t1"] - t_fail if done else None}
        return transfer_problems(done, self.size, self.sha256, self.synced_to, t_fail)


def start(lab: Host, standby: Any) -> tuple[Download | None, list[str]]:
    """Put the file on every real server, start the rate-limited download through the first
    VIP, and wait until the standby's IPVS table holds the connection (sent by the active's
    sync daemon to the standby's backup daemon): that entry is what lets the standby carry
    the connection on when it takes the VIP."""
    size, expected = transfer_expected()
    target = f"/var/www/html{TRANSFER_PATH}"
    for n in lab.reals:
        r = lab.sh(n, f"seq 1 {TRANSFER_LINES} > {target}.tmp && mv {target}.tmp {target} && sha256sum {target}")
        if r is None or r.exitcode != 0 or not r.stdout.startswith(expected):
            return None, [f"{n.name}: could not put the download's file in place"]
    svc = lab.services[0]
    log = lab.workdir / "transfer.jsonl"
    log.unlink(missing_ok=True)
    proc = lab.spawn(lab.netns.argv(
        [sys.executable, "-m", "builder.labclient", "--transfer", "--host", str(svc.vs.address),
         "--port", str(svc.vs.port or 80), "--path", TRANSFER_PATH, "--rate", str(TRANSFER_RATE),
         "--timeout", str(TRANSFER_TIMEOUT), "--out", str(log)]), "transfer.log")
    d = Download(proc, log, size, expected)
    deadline = time.monotonic() + 30
    while d.port is None and time.monotonic() < deadline and proc.poll() is None:
        started = [e for e in read_jsonl(d.log) if e.get("event") == "started"]
        d.port = started[0]["port"] if started else None
        time.sleep(0.2)
    if d.port is None:
        return d, ["the download through the VIP did not start"]
    client = f"{lab.netns.host.ip}:{d.port}"
    deadline = time.monotonic() + 20  # the download lasts ~45 s: the failure must come well within it
    while time.monotonic() < deadline and d.synced_to is None:
        r = lab.sh(standby, "ipvsadm -L -n -c")
        if r is not None and client in r.stdout:
            d.synced_to = standby.name
        else:
            time.sleep(POLL)
    lab.progress(f"download {client} -> {svc.label}: started; "
                 + (f"in {d.synced_to}'s IPVS table (synced)" if d.synced_to else
                    f"not in {standby.name}'s IPVS table"))
    return d, []
