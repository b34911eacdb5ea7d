"""Booting role images under QEMU (software emulation) and asking the guest questions.

A VM gets a copy-on-write overlay of its image (kept across restarts, as a disk is across a
power loss), its serial console appended to a file, and a qemu-guest-agent channel (a unix
socket) through which commands run inside the guest; the agent serves one client at a time,
so calls to one VM are serialised. Its NIC is attached to an empty QEMU hub unless a tap is
given, in which case QEMU runs inside the tap's network namespace: no traffic leaves the VM
either way. The process is started and stopped by PID, and dies with the thread that started
it (PR_SET_PDEATHSIG), so a lab killed outright leaves no VM running.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BuilderError
from .firmware import VmFirmware, machine_options, qemu_args
from .netns import exec_argv
from .run import log, require, run

PR_SET_PDEATHSIG = 1
NIC_ID = "nic0"  # the VM's one NIC, as QMP's set_link names it
# q35 without the chipset's devices a lab node never uses (its disk and NIC are virtio, its
# console serial): no AHCI controller (six SATA ports to probe), SMBus, PS/2 controller or
# VMware port. Under emulation every device is work for the initramfs's and systemd's udev:
# a director alone ran 120 s to "running" instead of 130 s (QEMU used 126 s of CPU, not 136).
MACHINE = "q35,sata=off,smbus=off,i8042=off,vmport=off"


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class GuestResult:
    exitcode: int
    stdout: str
    stderr: str


@dataclass
class Vm:
    name: str
    image: Path | None  # None: diskless, boots from the network (its NIC's PXE ROM)
    workdir: Path
    mac: str | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    memory_mib: int = 1024
    # One vCPU. Two (MTTCG: one host thread each) booted a lone VM faster, 24 s instead of 40 s,
    # but QEMU 7.2's multi-threaded TCG crashed x86 guest kernels while they patched their own
    # code (int3 oops in text_poke, double fault in the slab fast path): 2 of 8 lab boots.
    # Four VMs on two cores also come up sooner with one vCPU each (87 s instead of 110 s).
    cpus: int = 1
    tap: str | None = None
    netns: str | None = None
    # A null-modem cable to another VM: its second serial port (the guest's ttyS1) joined to
    # the other's through a unix socket, (path, True) on the side that listens. Not the host's.
    serial_link: tuple[Path, bool] | None = None
    # NICs after the first (the guest's eth1, ...): (tap, MAC) each; the lab's faults touch the first only
    extra_nics: list[tuple[str, str]] = field(default_factory=list)
    firmware: VmFirmware = VmFirmware.BIOS
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    console_mark: int = 0  # the console's size when QEMU last started: what this boot wrote follows
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def console(self) -> Path:
        return self.workdir / f"{self.name}.console"

    @property
    def qga_socket(self) -> Path:
        return self.workdir / f"{self.name}.qga"

    @property
    def qmp_socket(self) -> Path:
        return self.workdir / f"{self.name}.qmp"

    def start(self) -> None:
        qemu = require("qemu-system-x86_64", "qemu-system-x86")
        require("qemu-img", "qemu-utils")
        self.workdir.mkdir(parents=True, exist_ok=True)
        overlay = self.workdir / f"{self.name}.qcow2"
        if self.image is not None and not overlay.exists():
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.image.resolve(), overlay])
            # What the guest writes lands here (a director's authkeys, a rotation's new keys):
            # its owner's only, as the image is.
            overlay.chmod(0o600)
        self.qga_socket.unlink(missing_ok=True)
        self.qmp_socket.unlink(missing_ok=True)
        self.console_mark = self.console.stat().st_size if self.console.exists() else 0
        if self.tap:
            net = ["-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no"]
        else:
            net = ["-netdev", "hubport,id=n0,hubid=0"]  # a hub with nothing else on it
        nic = f"virtio-net-pci,id={NIC_ID},netdev=n0" + (f",mac={self.mac}" if self.mac else "")
        if self.image is None:
            nic += ",bootindex=1"  # the ROM QEMU ships (iPXE) does the PXE boot
        if self.firmware.uefi:
            # No option ROM: OVMF's own virtio-net driver and network stack, as a server's UEFI
            # has its own. Through QEMU's iPXE ROM, shim could not fetch GRUB beside it (its
            # TFTP buffer came back 4 MiB long: "Verification failed: (0x2) Invalid Parameter").
            nic += ",romfile="
        # tb-size=128: the translation cache QEMU would otherwise size at ~1 GB resident.
        # qemu64, not max: a guest that sees fewer CPU features boots ~20% faster under TCG
        # (57 s instead of 74 s to a running realserver), and Debian's baseline needs no more.
        # Plus RDRAND, as every x86 server has had for a decade: without a source of entropy the
        # guest's kernel seeded its random generator only 128 s into a lab boot (four VMs on two
        # cores), and systemd-random-seed, which sysinit.target waits for, waited with it.
        # Minus CMPXCHG16B (x86-64's baseline has none): the guests' kernel panicked twice under
        # QEMU 7.2's TCG with a double fault right after one in SLUB's fast path (kmalloc of a
        # socket, in the lab's rows); without it SLUB takes its locked path.
        # Minus SVM: no node runs VMs, and trixie's kernel (6.12) turns virtualization on as
        # kvm_amd loads; under OVMF with Secure Boot (SMM) one real server froze for good at that
        # step of its boot (the step its three peers passed within the second), a lab's full tier.
        argv = [qemu, "-machine", MACHINE + machine_options(self.firmware), "-accel", "tcg,tb-size=128",
                "-cpu", "qemu64,+rdrand,-cx16,-svm", "-m", str(self.memory_mib), "-smp", str(self.cpus),
                *qemu_args(self.firmware, self.workdir / f"{self.name}.efivars.fd"),
                "-display", "none", "-nodefaults", "-no-user-config",
                "-chardev", f"file,id=con0,path={self.console},append=on", "-serial", "chardev:con0",
                *self._serial_link_args(),
                *self._disk_args(overlay),
                *net, "-device", nic,
                *(a for i, (tap, mac) in enumerate(self.extra_nics, 1)
                  for a in ("-netdev", f"tap,id=n{i},ifname={tap},script=no,downscript=no",
                            "-device", f"virtio-net-pci,netdev=n{i},mac={mac}")),
                "-chardev", f"socket,path={self.qga_socket},server=on,wait=off,id=qga0",
                "-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
                # QEMU's own control channel: freeze and resume the VM, its NIC's link (the lab's faults)
                "-qmp", f"unix:{self.qmp_socket},server=on,wait=off"]
        if self.kernel:
            argv += ["-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.append or ""]
        if self.netns:
            argv = exec_argv(self.netns, argv)
        log.info("$ %s", " ".join(argv))
        with open(self.workdir / f"{self.name}.qemu.log", "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True, preexec_fn=_die_with_parent)

    def _disk_args(self, overlay: Path) -> list[str]:
        if self.image is None:
            return []
        if not self.firmware.uefi:
            return ["-drive", f"file={overlay},if=virtio,format=qcow2"]
        # OVMF boots what QEMU's boot order names first (else it tries the NIC's PXE too, which
        # waits out its DHCP): the disk, by its removable-media path.
        return ["-drive", f"file={overlay},if=none,id=disk0,format=qcow2",
                "-device", "virtio-blk-pci,drive=disk0,bootindex=1"]

    def _serial_link_args(self) -> list[str]:
        if self.serial_link is None:
            return []
        path, listen = self.serial_link
        # the listening side takes the other again after a power cycle; the other reconnects
        how = "server=on,wait=off" if listen else "server=off,reconnect=1"
        return ["-chardev", f"socket,id=link0,path={path},{how}", "-serial", "chardev:link0"]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Power off: kill the QEMU process we started, by its PID."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_console(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.console_text()
            if needle in text:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                raise BuilderError(f"{self.name}: QEMU exited ({self.proc.returncode}) before '{needle}'")
            time.sleep(1)
        raise BuilderError(f"{self.name}: no '{needle}' on the console after {timeout:.0f} s")

    # -- QMP: QEMU itself --------------------------------------------------------------

    def qmp(self, command: str, **arguments: object) -> object:
        """One QMP command to this VM's QEMU (stop, cont, set_link, query-status): its return."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.qmp_socket))
            f = s.makefile("rwb")

            def reply() -> dict[str, Any]:
                while True:
                    line = f.readline()
                    if not line:
                        raise OSError("QMP closed the channel")
                    message: dict[str, Any] = json.loads(line)
                    if "return" in message or "error" in message:
                        return message  # events and the greeting are skipped

            f.readline()  # the greeting
            for execute, args in (("qmp_capabilities", {}), (command, arguments)):
                f.write(json.dumps({"execute": execute, **({"arguments": args} if args else {})}).encode() + b"\n")
                f.flush()
                got = reply()
                if "error" in got:
                    raise BuilderError(f"{self.name}: QMP {execute}: {got['error'].get('desc')}")
            return got["return"]

    # -- qemu-guest-agent -------------------------------------------------------------

    def _qga(self, command: dict[str, object], timeout: float = 10) -> object:
        with self.lock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.qga_socket))
            sync_id = secrets.randbelow(2**31)
            s.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": sync_id}}).encode() + b"\n")
            s.sendall(json.dumps(command).encode() + b"\n")
            # The channel may still hold the reply to an earlier command that timed out (a
            # ping during boot): skip everything up to our own guest-sync's reply; the next is ours.
            buf = b""
            synced = False
            reply: dict[str, Any] | None = None
            while reply is None:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("guest agent closed the channel")
                buf += chunk
                while b"\n" in buf and reply is None:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if synced:
                        reply = message
                    elif message.get("return") == sync_id:
                        synced = True
        if "error" in reply:
            raise BuilderError(f"{self.name}: guest agent: {reply['error'].get('desc')}")
        return reply["return"]

    def ping(self) -> bool:
        """Does the guest agent answer now?"""
        try:
            self._qga({"execute": "guest-ping"}, timeout=3)
            return True
        except (OSError, ValueError, BuilderError):
            return False

    def console_since_start(self) -> str:
        """What the console shows of the current boot (the file keeps earlier boots too)."""
        try:
            with self.console.open("rb") as f:
                f.seek(self.console_mark)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def boot_stage(self) -> str:
        """How far the current boot got, from the serial console."""
        if not self.running:
            return "off"
        text = self.console_since_start()
        for needle, stage in (("Kernel panic", "kernel panic"),
                              ("login:", "login prompt"), ("Reached target", "starting services"),
                              ("Run /init", "initramfs"), ("Linux version", "kernel"),
                              ("PXELINUX", "pxelinux"), ("GRUB", "grub")):
            if needle in text:
                return stage
        return "firmware"

    def wait_agent(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BuilderError(f"{self.name}: QEMU exited ({self.proc.returncode})")
            if self.ping():
                return
            time.sleep(2)
        raise BuilderError(f"{self.name}: the guest agent did not answer within {timeout:.0f} s")

    def ipv4_addresses(self, timeout: float = 10) -> dict[str, list[str]]:
        """Interface (its address label, as `ip` shows it) -> its IPv4 addresses, from the
        agent's own getifaddrs(): no process started in the guest. Under emulation a watch that
        ran `ip` once a second cost a director ~27 % of a core; this, under 1 %."""
        ret = self._qga({"execute": "guest-network-get-interfaces"}, timeout=timeout)
        assert isinstance(ret, list)
        out: dict[str, list[str]] = {}
        for iface in ret:
            out.setdefault(iface["name"], []).extend(
                a["ip-address"] for a in iface.get("ip-addresses", []) if a.get("ip-address-type") == "ipv4")
        return out

    def put(self, path: str, data: bytes, chunk: int = 1024) -> bool:
        """Write `data` to `path` in the guest (created or truncated) through the agent's file
        calls, a small piece at a time: a busy guest's agent took one 4 KB command past its
        10 s (seen in the lab), and a piece is cheap to send again."""
        handle = self._qga({"execute": "guest-file-open", "arguments": {"path": path, "mode": "w"}})
        try:
            for start in range(0, len(data), chunk):
                piece = base64.b64encode(data[start:start + chunk]).decode()
                self._qga({"execute": "guest-file-write", "arguments": {"handle": handle, "buf-b64": piece}})
        finally:
            self._qga({"execute": "guest-file-close", "arguments": {"handle": handle}})
        return True

    def sh(self, script: str, timeout: float = 60) -> GuestResult:
        """Run a shell script inside the guest as root (its command line the guest's agent logs:
        files go in with `put`)."""
        try:
            ret = self._qga({"execute": "guest-exec", "arguments": {
                "path": "/bin/sh", "arg": ["-c", script], "capture-output": True}})
        except (OSError, ValueError) as e:
            raise BuilderError(f"{self.name}: guest-exec: {e}") from None
        assert isinstance(ret, dict)
        pid = ret["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = self._qga({"execute": "guest-exec-status", "arguments": {"pid": pid}})
            except (OSError, ValueError) as e:
                # A busy guest (a package installing under emulation) answers late: the command
                # runs on; ask again until the deadline. The late reply is skipped (guest-sync).
                if not self.running:
                    raise
                log.info("%s: guest-exec-status of %s: %s; asking again", self.name, pid, e)
                time.sleep(0.5)
                continue
            assert isinstance(st, dict)
            if st.get("exited"):
                out, err = (base64.b64decode(st.get(k, "")).decode(errors="replace") for k in ("out-data", "err-data"))
                return GuestResult(st.get("exitcode", -1), out, err)
            time.sleep(0.5)
        raise BuilderError(f"{self.name}: '{script}' did not finish within {timeout:.0f} s")
