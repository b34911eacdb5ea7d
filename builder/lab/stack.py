"""The director stack behind one seam: the only module of the lab that names heartbeat or
keepalived. Heartbeat (lvs-director's stack) answers through the package's own
lvs-cluster-check; keepalived (bench/'s hand-made peer) has no such command, so its roles are
where the VIPs are and its check is its IPVS table. Everything else in the lab asks these."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from .. import data_root

# lvs-cluster-check's row groups (its --json), as the tutorial's checks a-e read them.
CHECK_GROUPS = (
    ("a", "the active director holds the VIP, the standby does not", ("role", "vip")),
    ("b", "ldirectord ldirectord.cf status: running on both (no heartbeat resource)", ("ldirectord",)),
    ("c", "ipvsadm -L -n on both: the service, its scheduler, every real (Route), fallback",
     ("ipvs-service", "ipvs-real", "ipvs-fallback")),
    ("d", "LVSSyncDaemonSwap master status: master running on the active only; backup on the standby", ("sync",)),
    ("e", "heartbeat runs on both directors and each sees the other", ("heartbeat",)),
)
# What must hold on the survivor while machines are down (its peer being dead is expected).
DEGRADED_GROUPS = ("vip", "ldirectord", "sync", "ipvs-service", "ipvs-fallback")


def cluster_check_module(path: Path | None = None) -> ModuleType:
    """lvs-cluster-check as the director package ships it (or the file at `path`); the lab
    parses ipvsadm's tables with it."""
    path = path or data_root() / "overlays" / "director" / "usr" / "sbin" / "lvs-cluster-check"
    loader = importlib.machinery.SourceFileLoader("lvs_cluster_check", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def parse_ipvsadm(text: str) -> dict[str, Any]:
    table: dict[str, Any] = cluster_check_module().parse_ipvsadm(text)
    return table


Shell = Callable[[str, float], "tuple[int, str] | None"]  # a command on a director: (exit, stdout) or None


class Stack(Protocol):
    label: str          # the report's "directors:"
    service: str        # the unit a clean stop stops
    has_checks: bool    # runs lvs-cluster-check
    instance_command: str  # prints what changes whenever the stack (re)starts on a director

    def seen_pattern(self, gone: str) -> re.Pattern[str]: ...

    def check(self, sh: Shell, role_hint: str) -> dict[str, Any] | None: ...


class Heartbeat:
    label = "lvs-director"
    service = "heartbeat.service"
    has_checks = True
    # heartbeat raises its generation on every start, also when it restarts itself in place
    # (exec, same PID) after a healed partition, ~10 s after the heal.
    instance_command = "cat /var/lib/heartbeat/hb_generation"

    def seen_pattern(self, gone: str) -> re.Pattern[str]:
        """How the survivor logs that director `gone` went: heartbeat's `node X: is dead` (power
        loss, hang, link), `Received shutdown notice from 'X'` (clean stop), or lvs-director's
        harc `X hands over` (X's heartbeat stopping)."""
        name = re.escape(gone)
        return re.compile(rf"node {name}: is dead|Received shutdown notice from '{name}'|{name} hands over")

    def check(self, sh: Shell, role_hint: str) -> dict[str, Any] | None:
        r = sh("lvs-cluster-check --json", 120)
        if r is None or r[0] not in (0, 1):
            return None
        try:
            result: dict[str, Any] = json.loads(r[1])
        except ValueError:
            return None
        return result

    @staticmethod
    def late_heartbeats(journal: str) -> list[tuple[float, int]]:
        """(guest uptime, interval ms) of each `Late heartbeat: Node X: interval N ms` in a
        director's `journalctl -o short-monotonic`."""
        out = []
        for line in journal.splitlines():
            m = re.match(r"\[\s*(\d+\.\d+)\].*Late heartbeat.*interval (\d+) ms", line)
            if m:
                out.append((float(m.group(1)), int(m.group(2))))
        return out

    late_heartbeat_command = "journalctl -b --no-pager -o short-monotonic -g 'Late heartbeat'"


class Keepalived:
    label = "keepalived (bench peer)"
    service = "keepalived.service"
    has_checks = False
    instance_command = "cat /run/keepalived.pid"

    def seen_pattern(self, gone: str) -> re.Pattern[str]:
        return re.compile(r"Entering MASTER STATE")

    def check(self, sh: Shell, role_hint: str) -> dict[str, Any] | None:
        return {"role": role_hint, "checks": []}


def stack_for(peer: bool) -> Stack:
    return Keepalived() if peer else Heartbeat()


def seen_in_journal(journal: str, pattern: re.Pattern[str], offset: float) -> float | None:
    """In a survivor's `journalctl -o short-monotonic`, the first line matching `pattern`, as
    guest uptime + `offset` (on the lab's clock, seconds after the failure). Lines from before
    the failure (an earlier failover's) are skipped."""
    for line in journal.splitlines():
        m = re.match(r"\[\s*(\d+\.\d+)\]", line)
        if m and pattern.search(line):
            seen = float(m.group(1)) + offset
            if seen > -1.0:  # the two clocks agree within a second
                return max(seen, 0.0)
    return None
