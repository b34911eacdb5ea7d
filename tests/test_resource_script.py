"""Our heartbeat resource scripts, run for real. LVSSyncDaemonSwap: this kernel has no IPVS, so
only 'no daemon' states are reachable here; the swap itself is proven in the VM lab. LVSVip:
start, status and stop on an interface in a network namespace this test makes and removes
(its gratuitous ARP, where heartbeat's send_arp is installed, stays in there)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import deb, render, spec
from builder.model import Role


def _script(tmp_path: Path, name: str = "LVSSyncDaemonSwap") -> Path:
    c, _ = spec.load(None)
    f = render.render(c, Role.DIRECTOR, epoch=deb.DEFAULT_EPOCH)[f"etc/ha.d/resource.d/{name}"]
    p = tmp_path / name
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


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"lvs-test-vip-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # a bridge without ports as the interface: this kernel may lack the dummy driver
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "eth0", "up"], check=True)
        subprocess.run(["ip", "-n", name, "address", "add", "192.168.1.104/24", "dev", "eth0"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_lvsvip_claims_and_releases_the_address(tmp_path: Path, netns: str) -> None:
    script = _script(tmp_path, "LVSVip")
    arg = "192.168.1.105/24/eth0/192.168.1.255"

    def vip(action: str) -> tuple[int, str]:
        p = subprocess.run(["ip", "netns", "exec", netns, script, arg, action], capture_output=True, text=True)
        return p.returncode, p.stdout

    def addresses() -> str:
        return subprocess.run(["ip", "-n", netns, "-4", "-o", "address", "show", "dev", "eth0"],
                              capture_output=True, text=True, check=True).stdout

    assert vip("status") == (0, "192.168.1.105 stopped\n")
    assert vip("start")[0] == 0
    assert "inet 192.168.1.105/24 brd 192.168.1.255 scope global secondary eth0" in addresses()
    # heartbeat's ResourceManager reads "running" as held, anything else as not
    assert vip("status") == (0, "192.168.1.105 running on eth0\n")
    assert vip("start")[0] == 0  # again: no second address, no error
    assert addresses().count("192.168.1.105/") == 1
    assert vip("stop")[0] == 0
    assert "192.168.1.105" not in addresses()
    assert "192.168.1.104/24" in addresses()  # the node's own address stays
    assert vip("stop")[0] == 0  # stopping what is stopped succeeds (heartbeat requires it)
    assert vip("status") == (0, "192.168.1.105 stopped\n")


def test_lvsvip_claim_adds_every_vip_once(tmp_path: Path, netns: str) -> None:
    """harc's quick claim: all VIPs by one ip call; one already held stays, once, and the rest
    are still added after it."""
    script = _script(tmp_path, "LVSVip")
    held, other = "192.168.1.105/24/eth0/192.168.1.255", "192.168.1.106/24/eth0"

    def addresses() -> str:
        return subprocess.run(["ip", "-n", netns, "-4", "-o", "address", "show", "dev", "eth0"],
                              capture_output=True, text=True, check=True).stdout

    subprocess.run(["ip", "netns", "exec", netns, script, held, "start"], check=True)
    p = subprocess.run(["ip", "netns", "exec", netns, script, "claim", held, other], capture_output=True, text=True)
    assert p.returncode == 0
    # nothing on stderr but, on a machine without heartbeat's send_arp, that it was not sent
    assert all(line.endswith("added without gratuitous ARP") for line in p.stderr.splitlines()), p.stderr
    have = addresses()
    assert have.count("192.168.1.105/") == 1
    assert "inet 192.168.1.105/24 brd 192.168.1.255 scope global secondary eth0" in have
    assert "inet 192.168.1.106/24 scope global secondary eth0" in have
    for arg in (held, other):
        assert subprocess.run(["ip", "netns", "exec", netns, script, arg, "stop"]).returncode == 0
    assert "192.168.1.105/" not in addresses() and "192.168.1.106/" not in addresses()


def test_lvsvip_bad_arguments_print_usage(tmp_path: Path) -> None:
    script = _script(tmp_path, "LVSVip")
    for args in ([], ["192.168.1.105/24/eth0/192.168.1.255"], ["192.168.1.105", "start"],
                 ["192.168.1.105/24/eth0", "restart"], ["claim"], ["claim", "192.168.1.105"]):
        proc = subprocess.run([script, *args], capture_output=True, text=True)
        assert proc.returncode == 1
        assert proc.stderr.startswith("usage: LVSVip ADDRESS/PREFIX/INTERFACE[/BROADCAST]")
