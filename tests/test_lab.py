"""`lvs-builder lab`: the reference cluster booted in VMs inside a network namespace the lab
creates, through the tutorial's checks and its failure scenarios. The report's times are
printed, not asserted (software emulation); what is asserted is every check's verdict, the
scenarios' outcome, and that nothing is left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import lab
from builder.model import Role

from .conftest import REPO, BuiltImages, PxeTree

LVS_BUILDER = str(Path(sys.executable).parent / "lvs-builder")


def lab_argv(built: BuiltImages, workdir: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, XDG_DATA_HOME=str(built.data_home))
    return [LVS_BUILDER, "lab", "--images", str(built.out), "--no-build", "--workdir", str(workdir), *extra], env


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


UPGRADE_KEYS = ["u0", "u1", "u2", "u3", "u4", "u5", "u-end"]
ROTATION_KEYS = ["k1", "k2", "k3", "k-end"]  # the key rotation, after the upgrade
# CI's lab: every kind of fault once, on each kind of target (a real server, all of them, the
# active director both ways, and the faults that break HA pairs), within CI's time. The
# tutorial's combined failures (3-*, 5-*) and one real server's power loss (1; the PXE lab's
# 3-kill has it) run in the full tier: `./setup.sh test -m full`.
# The hang and the link fault run on the two-path cluster, where each tells more: in the same
# boot, after the rolling upgrade to docs/examples/two-paths.yaml (the site adding its serial
# cable and a ping node as an upgrade), rows keyed KEY@1.1.
CI_KEYS = ["2-kill", "2-stop", "4", "partition", "real-stopped", "real-page", "real-hung"]
TWO_PATH_KEYS = [k for k in lab.SCENARIO_KEYS if k in ("partition", "link", "hang")]  # the lab's order
TWO_PATHS = REPO / "docs" / "examples" / "two-paths.yaml"


def assert_two_paths_hold(rows: dict[str, dict[str, Any]], tag: str = "") -> None:
    """A partition of the segment splits nothing (heartbeat hears the other over ttyS1); the
    active director's link down hands the VIPs over through ipfail; a hang is taken over and,
    on resume, one director keeps the VIPs without a gap."""
    part, link, hang = (rows[k + tag] for k in ("partition", "link", "hang"))
    assert (part["two_holders_s"], part["no_holder_s"], part["failed"]) == (0, 0, 0), part
    assert link["two_holders_s"] == 0 and link["vip_at_end"] != part["vip_at_end"], link  # ipfail moved them
    assert hang["served_again_s"] is not None and hang["after_restore"]["no_holder_s"] == 0, hang
    assert hang["after_restore"]["failed"] == 0, hang


@pytest.mark.slow
@pytest.mark.parametrize("keys", [pytest.param(CI_KEYS, id="ci"),
                                  pytest.param(list(lab.DEFAULT_SCENARIO_KEYS), id="every", marks=pytest.mark.full)])
def test_the_lab_proves_the_reference_cluster(keys: list[str], built_images: BuiltImages, tmp_path: Path,
                                              show: Callable[[str], None]) -> None:
    """The tutorial's checks, the failure scenarios, then (--upgrade, same boot) the rolling
    upgrade of all four nodes to the next version, the client requesting the VIP throughout:
    the reference cluster plus a serial link and a ping node (two-paths.yaml), whose faults of
    one path then run."""
    chosen = [] if keys == list(lab.DEFAULT_SCENARIO_KEYS) else [a for k in keys for a in ("--scenario", k)]
    argv, env = lab_argv(built_images, tmp_path / "lab", "--json", "--upgrade", "--upgrade-to", str(TWO_PATHS),
                         *[a for k in TWO_PATH_KEYS for a in ("--then-scenario", k)], "--rotate-key", *chosen)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        stdout, stderr = proc.communicate(timeout=3600)
    table = (tmp_path / "lab" / "report.md").read_text()
    show("\n" + table)
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(stdout)
    assert report["ok"] is True and report["error"] is None
    rows = {r["key"]: r for r in report["rows"]}
    then = [f"{k}@1.1" for k in TWO_PATH_KEYS]
    assert list(rows) == ["a", "b", "c", "d", "e", "f", *keys, *UPGRADE_KEYS, *ROTATION_KEYS, *then]
    assert all(r["ok"] for r in rows.values())
    # The rolling upgrade and the key rotation: every step served every request (the client's
    # 3 s connect timeout and 5 s read timeout); the upgrade ended with all nodes at 1.1,
    # heartbeat running the new ha.cf, the rotation with both directors on the new key alone,
    # heartbeat never restarted and each seeing the other (heartbeat's own cl_status).
    for key in [*UPGRADE_KEYS[:-1], *ROTATION_KEYS[:-1]]:
        assert rows[key]["sent"] > 0 and rows[key]["failed"] == 0, rows[key]
    # the upgrade brought up heartbeat's second path: heartbeat's own word, on both directors
    assert rows["u-end"]["detail"] == ("4 nodes at 1.1; warntime 2 and ldirectord reloaded on both; "
                                       "loadb1 hears loadb2 on eth0 up, /dev/ttyS1 up; "
                                       "loadb2 hears loadb1 on eth0 up, /dev/ttyS1 up")
    assert rows["k-end"]["detail"] == ("lvs-cluster-key 4 on both; 3 rereads of authkeys, no restart; "
                                       "each sees the other active")
    assert rows["k1"]["vip_at_end"] == rows["k3"]["vip_at_end"] == rows[UPGRADE_KEYS[-2]]["vip_at_end"]  # no VIP moved
    # The upgrade brings the first ping node: the standby, upgraded first, reaches it and the
    # active does not know of it, so ipfail moves the VIPs at u1 (make-before-break: no request
    # failed), which is the handover
    assert rows["u0"]["vip_at_end"] == rows[keys[-1]]["vip_at_end"] != rows["u1"]["vip_at_end"]
    assert rows["u2"]["vip_at_end"] == rows["u1"]["vip_at_end"]
    plan = {sc.key: sc for sc in lab.SCENARIOS}
    for key in keys:
        r = rows[key]
        assert r["sent"] > 0 and r["vip_at_end"] in ("loadb1", "loadb2"), r
        assert r["two_holders_s"] is not None and r["no_holder_s"] is not None and r["arp_followed"] is True, r
        if key != "partition":  # one path (bcast and mcast on eth0): the split is expected, reported
            assert r["served_again_s"] is not None and r["detected_s"] is not None, r
        else:  # ... and healed without an outage: one holder throughout, no request failed
            assert r["two_holders_s"] > 0 and r["detail"].endswith(", 0 failed"), r
            assert r["after_restore"]["no_holder_s"] == 0 and r["after_restore"]["failed"] == 0, r
        # every virtual service is requested; a sick real server is out of every one that lists it
        assert set(r["served_again"]) == {"192.168.1.105:80"}, r
    # auto_failback off: after a director's failure the VIPs stay with the survivor; after a
    # real server's, with the director that had them
    for before, key in zip(keys, keys[1:], strict=False):
        if plan[key].after is not lab.After.SURVIVOR:
            continue
        moved = rows[key]["vip_at_end"] != rows[before]["vip_at_end"]
        assert moved == plan[key].takeover, (before, key)
    assert_two_paths_hold(rows, "@1.1")
    assert "booting loadb1 (director), loadb2 (director), webserver1 (realserver), webserver2 (realserver)" \
        in stderr
    assert "ping node 192.168.1.1 on the bridge, a serial link between the directors" in stderr
    assert f"lvs-lab-{proc.pid}" not in namespaces()


def lab_of_the_reference_with(built: BuiltImages, tmp_path: Path, data: dict[str, Any], keys: list[str],
                              show: Callable[[str], None]) -> tuple[dict[str, dict[str, Any]], str]:
    """`lab --spec` on a variant of the reference cluster (its name, so its key; its real
    servers' packages, byte for byte, so their image: only the director's is built)."""
    spec_path = tmp_path / "variant.yaml"
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
    # the same cluster, so the same key: the reference's, beside the spec as a spec's key is kept
    shutil.copy(built.data_home / "lvs-builder" / "reference.authkey", tmp_path / "variant.authkey")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("lvs-realserver-trixie.qcow2", "lvs-realserver-trixie.vmlinuz", "lvs-realserver-trixie.initrd",
                 "lvs-realserver-trixie.qcow2.firmware", "lvs-realserver_1.0_all.deb"):
        os.link(built.out / name, images / name)
    argv, env = lab_argv(built, tmp_path / "lab", "--json", *[a for k in keys for a in ("--scenario", k)])
    argv[argv.index("--no-build")] = "--spec"
    argv.insert(argv.index("--spec") + 1, str(spec_path))
    argv[argv.index("--images") + 1] = str(images)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        stdout, stderr = proc.communicate(timeout=3600)
    report_md = tmp_path / "lab" / "report.md"
    assert report_md.exists(), f"lab ended ({proc.returncode}) without a report: {stderr[-3000:]}"
    show("\n" + report_md.read_text())
    assert proc.returncode == 0, stderr[-3000:]
    assert "building lvs-realserver" not in stderr and "building lvs-director-trixie.qcow2" in stderr
    assert f"lvs-lab-{proc.pid}" not in namespaces()
    rows = {r["key"]: r for r in json.loads(stdout)["rows"]}
    assert list(rows) == ["a", "b", "c", "d", "e", "f", *keys]
    assert all(r["ok"] for r in rows.values())
    return rows, stderr


@pytest.mark.slow
@pytest.mark.full  # its own director image and lab boot: CI proves the same rows after the upgrade above
def test_with_a_serial_link_and_a_ping_node_no_fault_of_one_path_splits_the_brain(
        built_images: BuiltImages, tmp_path: Path, show: Callable[[str], None]) -> None:
    """docs/examples/two-paths.yaml built and booted as it is: the reference cluster with a
    null-modem cable between its directors (the lab joins their ttyS1) and a router for ipfail
    to ping (the lab's bridge answers for 192.168.1.1)."""
    data = yaml.safe_load(TWO_PATHS.read_text())
    rows, stderr = lab_of_the_reference_with(built_images, tmp_path, data, TWO_PATH_KEYS, show)
    assert "ping node 192.168.1.1 on the bridge, a serial link between the directors" in stderr
    # heartbeat's own word on both directors: its links to the other, the serial one included
    # (in the order heartbeat first heard each link)
    assert rows["e"]["detail"].count("/dev/ttyS1 up") == 2 and " dead" not in rows["e"]["detail"], rows["e"]
    assert_two_paths_hold(rows)


@pytest.mark.slow
@pytest.mark.full  # one more director image and lab boot
def test_with_a_link_of_their_own_the_directors_split_on_nothing_either(
        built_images: BuiltImages, tmp_path: Path, show: Callable[[str], None]) -> None:
    """The other kind of second path: a NIC of each director's on a link of their own (the
    lab's second bridge), heartbeat's ucast on it with each director's address there, which
    lvs-identity configures at boot."""
    data = yaml.safe_load(TWO_PATHS.read_text())
    data["heartbeat"]["media"][2] = {"type": "ucast", "interface": "eth1", "addresses": ["10.9.0.1", "10.9.0.2"],
                                     "prefix": 30}
    rows, stderr = lab_of_the_reference_with(built_images, tmp_path, data, ["partition", "link"], show)
    assert "br1 for heartbeat's eth1 between the directors" in stderr
    assert rows["e"]["detail"].count("eth1 up") == 2 and " dead" not in rows["e"]["detail"], rows["e"]
    part, link = rows["partition"], rows["link"]
    assert (part["two_holders_s"], part["no_holder_s"], part["failed"]) == (0, 0, 0), part
    assert link["two_holders_s"] == 0 and link["vip_at_end"] != part["vip_at_end"], link


@pytest.mark.slow
@pytest.mark.full  # a lab boot of its own; CI boots the images and the PXE tree through OVMF in test_image, test_pxe
@pytest.mark.parametrize(("boot", "firmware"), [("disk", "uefi-secure"), ("pxe", "uefi-secure"), ("disk", "uefi")])
def test_through_uefi_the_cluster_passes_the_tutorials_checks(
        boot: str, firmware: str, built_images: BuiltImages, pxe_tree: PxeTree, tmp_path: Path,
        show: Callable[[str], None]) -> None:
    """Every node through OVMF, with Secure Boot on (Microsoft's keys, as servers ship) or off,
    and the image's shim and GRUB (or, diskless, the tree's): the tutorial's checks, no fault."""
    pxe = ["--pxe", "--pxe-tree", str(pxe_tree.tree)] if boot == "pxe" else []
    argv, env = lab_argv(built_images, tmp_path / "lab", "--json", "--firmware", firmware, "--scenario", "none",
                         *pxe)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        stdout, stderr = proc.communicate(timeout=3600)
    show("\n" + (tmp_path / "lab" / "report.md").read_text())
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(stdout)
    assert (report["ok"], report["firmware"], report["boot"]) == (True, firmware, boot)
    assert [r["key"] for r in report["rows"]] == ["a", "b", "c", "d", "e", "f"]
    state = "enabled" if firmware == "uefi-secure" else "disabled"
    for name in ("loadb1", "loadb2", "webserver1", "webserver2"):
        console = (tmp_path / "lab" / f"{name}.console").read_text(errors="replace")
        assert "Linux version" in console and f"secureboot: Secure boot {state}" in console, name


@pytest.mark.slow
def test_an_interrupted_lab_leaves_no_vm_and_no_namespace(built_images: BuiltImages, tmp_path: Path) -> None:
    argv, env = lab_argv(built_images, tmp_path / "lab", "--scenario", "none")
    # Ctrl-C as from a terminal: a shell that runs the tests as a background job hands its
    # children SIGINT ignored, and Python then installs no KeyboardInterrupt for it.
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started: list[int] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "under QEMU" in line:
                break
        time.sleep(5)
        started = children(proc.pid)
        assert len(started) == 6, started  # four VMs, the client, its ARP monitor
        assert f"lvs-lab-{proc.pid}" in namespaces()
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert [pid for pid in started if alive(pid)] == []
    assert f"lvs-lab-{proc.pid}" not in namespaces()
    assert list((tmp_path / "lab").glob("*.qcow2")) == []


def refused(images: Path) -> str:
    """`lab --images IMAGES --no-build` that stops before it boots anything: what it said."""
    with subprocess.Popen([LVS_BUILDER, "lab", "--images", str(images), "--no-build"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"lvs-lab-{proc.pid}" not in namespaces()
    return stderr


def test_a_lab_without_images_says_which_and_starts_nothing(tmp_path: Path) -> None:
    assert refused(tmp_path) == (f"error: {tmp_path}/lvs-director-trixie.qcow2: missing; run build-image director "
                                 "(or lab without --no-build)\n")


def test_an_image_built_for_another_firmware_is_not_booted(tmp_path: Path) -> None:
    """The images lab --no-build finds are current for the spec, but one was built --firmware
    bios (or before there was a choice: no .firmware beside it): the lab says so and stops."""
    from builder import pipeline

    images = tmp_path / "images"
    loaded = pipeline.load_cluster(None)
    for role in (Role.DIRECTOR, Role.REALSERVER):
        pipeline.build_debs(loaded, pipeline.node_packages(loaded.cluster, role), images)
        (images / f"lvs-{role.value}-trixie.qcow2").write_bytes(b"")
    (images / "lvs-director-trixie.qcow2.firmware").write_text("hybrid\n")
    assert refused(images) == (f"error: {images}/lvs-realserver-trixie.qcow2: built for bios, not hybrid; run "
                               "build-image realserver (or lab without --no-build)\n")


def bios_spec(where: Path) -> Path:
    """The reference cluster with `images: {firmware: bios}`, its key beside it."""
    from builder import authkey

    data = yaml.safe_load((REPO / "builder" / "data" / "reference.yaml").read_text())
    data["images"] = {"firmware": "bios"}
    spec_path = where / "bios.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    shutil.copyfile(authkey.default_path(None), authkey.default_path(spec_path))
    authkey.default_path(spec_path).chmod(0o600)
    return spec_path


def test_the_specs_images_firmware_is_what_the_lab_takes_as_current(tmp_path: Path) -> None:
    """images.firmware: bios: a hybrid image beside current packages is not the spec's."""
    from builder import pipeline

    spec_path = bios_spec(tmp_path)
    images = tmp_path / "images"
    loaded = pipeline.load_cluster(spec_path)
    for role in (Role.DIRECTOR, Role.REALSERVER):
        pipeline.build_debs(loaded, pipeline.node_packages(loaded.cluster, role), images)
        (images / f"lvs-{role.value}-trixie.qcow2").write_bytes(b"")
        (images / f"lvs-{role.value}-trixie.qcow2.firmware").write_text("hybrid\n")
    r = subprocess.run([LVS_BUILDER, "lab", "--spec", str(spec_path), "--images", str(images), "--no-build"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (1, f"error: {images}/lvs-director-trixie.qcow2: built for hybrid, not bios; "
                                           "run build-image director (or lab without --no-build)\n")


def test_through_uefi_a_spec_of_bios_images_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    spec_path = bios_spec(tmp_path)
    r = subprocess.run([LVS_BUILDER, "lab", "--spec", str(spec_path), "--images", str(tmp_path / "images"),
                        "--firmware", "uefi"], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (1, "error: --firmware uefi: the spec's images are bios (images.firmware), "
                                           "which boot on BIOS only; set images.firmware: hybrid, or boot them "
                                           "with --firmware bios\n")
    assert not (tmp_path / "images").exists()


def test_through_the_firmware_a_node_without_a_mac_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "builder" / "data" / "reference.yaml").read_text())
    del data["real_servers"][1]["mac"]
    spec_path = tmp_path / "cluster.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    r = subprocess.run([LVS_BUILDER, "lab", "--spec", str(spec_path), "--images", str(tmp_path / "images"),
                        "--firmware", "uefi-secure"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr == ("error: --firmware uefi-secure: webserver2 has no mac in the spec; a node booted through "
                        "its firmware is known by its MAC\n")
    assert not (tmp_path / "images").exists()


def test_a_boot_stuck_in_its_firmware_is_powered_on_again_once_then_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A diskless VM with no PXE server (its NIC on an empty hub): iPXE finds no DHCP and the
    serial console stays silent. The lab powers it on again once, notes it, then gives up with
    a one-line reason. Real QEMU, real console; only the patience is shortened."""
    from builder import spec
    from builder.lab import cluster
    from builder.lab.stack import Heartbeat
    from builder.model import Role
    from builder.qemu import Vm

    monkeypatch.setattr(cluster, "FIRMWARE_STALL", 4)
    monkeypatch.setattr(cluster, "BOOT_TIMEOUT", 90)
    the_lab = lab.Lab(spec.load(None)[0], {}, tmp_path, Heartbeat(), pxe_tree=tmp_path)
    node = the_lab.nodes[-1].node
    vm = Vm(name=node.name, image=None, workdir=tmp_path, mac=node.mac, memory_mib=256)
    stuck = lab.LabNode(node, Role.REALSERVER, vm)
    vm.start()
    first_pid = vm.proc.pid if vm.proc else None
    try:
        with pytest.raises(lab.BuilderError, match=rf"^{node.name}: its firmware printed nothing for \d+ s "
                                                   r"\(console's last line: 'none'\), a second time; see "):
            stuck_t = time.monotonic()
            the_lab.wait_up([stuck], stuck_t)
        assert len(the_lab.notes) == 1 and "powered on again" in the_lab.notes[0]
        assert vm.running and vm.proc is not None and vm.proc.pid != first_pid
    finally:
        vm.stop()
