"""PXE rollouts: what `build-pxe` renders from the spec (its pxelinux entries and dnsmasq
configuration, checked by dnsmasq itself), and what it refuses before building anything."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder import pxe, spec
from builder.cli import cli

from .conftest import need_tool, write_spec

# -- fast: the entries and the configuration, from the spec ----------------------------------

def test_each_node_gets_an_entry_by_mac_and_every_other_machine_is_told_why_not() -> None:
    cluster, _ = spec.load(None)
    files = pxe.render_configs(cluster)
    entries = sorted(k for k in files if k.startswith("tftp/pxelinux.cfg/01-"))
    assert entries == ["tftp/pxelinux.cfg/01-52-54-00-00-01-01", "tftp/pxelinux.cfg/01-52-54-00-00-01-02",
                       "tftp/pxelinux.cfg/01-52-54-00-00-01-03", "tftp/pxelinux.cfg/01-52-54-00-00-01-04"]
    loadb2 = files["tftp/pxelinux.cfg/01-52-54-00-00-01-04"]
    assert "  KERNEL http://192.168.1.10/director/vmlinuz\n" in loadb2
    assert "  INITRD http://192.168.1.10/director/initrd.img\n" in loadb2
    assert ("  APPEND boot=live fetch=http://192.168.1.10/director/filesystem.squashfs ip=dhcp console=tty0 "
            "console=ttyS0,115200 net.ifnames=0 lvs.node=loadb2\n") in loadb2
    assert "  IPAPPEND 2\n" in loadb2  # BOOTIF: the initramfs configures the NIC it booted from
    default = files["tftp/pxelinux.cfg/default"]
    assert "SAY lvs-builder: this machine's MAC is in no node of the reference cluster's spec, so it does not " \
           "join the cluster.\n" in default
    assert "loadb1 (52:54:00:00:01:03)" in default
    assert "KERNEL" not in default and "  LOCALBOOT -1\n" in default


def test_dnsmasq_accepts_both_configurations(tmp_path: Path) -> None:
    need_tool("dnsmasq")
    cluster, _ = spec.load(None)
    files = pxe.render_configs(cluster)
    static = files["dnsmasq-static.conf"]
    assert "dhcp-host=52:54:00:00:01:04,192.168.1.104,loadb2,infinite\n" in static
    assert "dhcp-range=192.168.1.200,192.168.1.209,255.255.255.0,10m\n" in static
    assert "dhcp-option=option:router\n" in static  # the spec has no gateway: advertise none
    assert "dhcp-range=192.168.1.0,proxy,255.255.255.0\n" in files["dnsmasq-proxy.conf"]
    for mode in ("static", "proxy"):
        conf = tmp_path / f"dnsmasq-{mode}.conf"
        conf.write_text(files[f"dnsmasq-{mode}.conf"])
        r = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True)
        assert r.returncode == 0 and "syntax check OK" in r.stderr, r.stderr


@pytest.mark.parametrize("mutate,line", [
    (lambda d: d["real_servers"][1].pop("mac"),
     "error: real_servers[1].mac: webserver2 has no MAC, so no PXE entry can name it: add its MAC, or roll it "
     "out from a disk image"),
    (lambda d: d.pop("provisioning"),
     "error: provisioning: missing: a PXE rollout needs the provisioning server's address (provisioning: "
     "{server: ADDRESS}); see docs/spec.md"),
])
def test_build_pxe_refuses_a_spec_it_cannot_roll_out_before_building_anything(
        tmp_path: Path, reference: dict[str, Any], mutate: Any, line: str) -> None:
    mutate(reference)
    path = write_spec(tmp_path, reference)
    r = CliRunner().invoke(cli, ["-v", "build-pxe", "--spec", str(path), "--out", str(tmp_path / "pxe"),
                                 "--images", str(tmp_path / "images")])
    assert r.exit_code == 2
    assert line in r.stderr.splitlines()
    assert not (tmp_path / "pxe").exists() and not (tmp_path / "images").exists()
