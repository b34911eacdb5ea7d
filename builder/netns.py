"""A private network namespace for the lab: one bridge, a tap per VM, one host address for the
client, and no route out. Everything the lab puts on the wire stays in here; deleting the
namespace removes the bridge and the taps with it.

Namespaces are named `lvs-lab-<pid of the lab>`, so one left behind by a lab that was killed
outright is recognised (its PID is gone) and removed by the next lab, after stopping by PID
what still runs inside it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Interface

from .run import log, require, run

PREFIX = "lvs-lab-"
BRIDGE = "br0"
BRIDGE_MAC = "52:54:00:1a:b0:fe"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_in(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """A command run inside namespace `name` (`ip netns exec` execs it: the PID is the command's)."""
    return ["ip", "netns", "exec", name, *argv]


def _remove(name: str) -> None:
    """Stop by PID whatever still runs in namespace `name`, then delete it."""
    for pid in _pids_in(name):
        log.info("stopping PID %d left in %s", pid, name)
        os.kill(pid, signal.SIGKILL)
    run(["ip", "netns", "delete", name])


def remove_stale() -> list[str]:
    """Delete lab namespaces whose lab process is gone; stop what still runs in them."""
    require("ip", "iproute2")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    removed = []
    for line in names:
        m = re.match(rf"({re.escape(PREFIX)}(\d+))\b", line)
        if not m or _alive(int(m.group(2))):
            continue
        _remove(m.group(1))
        removed.append(m.group(1))
    return removed


@dataclass
class Netns:
    name: str
    host: IPv4Interface
    created: bool = False

    @classmethod
    def for_this_process(cls, host: IPv4Interface) -> Netns:
        return cls(f"{PREFIX}{os.getpid()}", host)

    def create(self) -> None:
        require("ip", "iproute2")
        run(["ip", "netns", "add", self.name])
        self.created = True
        ip = ["ip", "-n", self.name]
        run([*ip, "link", "set", "lo", "up"])
        # No STP, no forwarding delay, no multicast snooping: a hub for heartbeat's bcast/mcast.
        # A fixed MAC: a bridge otherwise takes its lowest port's, which may change as VMs come and go.
        run([*ip, "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge", "stp_state", "0",
             "forward_delay", "0", "mcast_snooping", "0"])
        run([*ip, "address", "add", str(self.host), "dev", BRIDGE])
        run([*ip, "link", "set", BRIDGE, "up"])

    def add_address(self, address: IPv4Interface) -> None:
        """Another address of the host side on the bridge (a server the VMs talk to)."""
        run(["ip", "-n", self.name, "address", "add", str(address), "dev", BRIDGE])

    def add_bridge(self, name: str) -> None:
        """A second segment with no host address on it (the directors' own heartbeat link)."""
        ip = ["ip", "-n", self.name]
        run([*ip, "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0",
             "mcast_snooping", "0"])
        run([*ip, "link", "set", name, "up"])

    def add_tap(self, tap: str, bridge: str = BRIDGE) -> None:
        ip = ["ip", "-n", self.name]
        run([*ip, "tuntap", "add", "dev", tap, "mode", "tap"])
        run([*ip, "link", "set", tap, "master", bridge])
        run([*ip, "link", "set", tap, "up"])

    def argv(self, argv: list[str]) -> list[str]:
        return exec_argv(self.name, argv)

    def delete(self) -> None:
        if self.created:
            _remove(self.name)
            self.created = False
