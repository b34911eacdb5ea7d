"""Role images: the role .deb + diskimage-builder (debian-minimal, our elements) -> disk image.

Normal hosts run disk-image-create as it is. Hosts whose kernel has no device-mapper (some
sandboxes and containers) cannot map partitions with kpartx, and some kernels cannot mount
FAT (a hybrid image's EFI system partition); there, and only there, the build runs with
builder/hostshims first on PATH: a kpartx that attaches one loop device per partition at its
offset, a mount/umount that stand a directory in for the FAT partition and write it there
with mtools, and the sudo/dmsetup that make diskimage-builder use them. Each shim is the real
tool wherever the host has what it stands in for.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import data_root
from .deb import KEY_MODE
from .errors import ToolError
from .mirror import debian_mirror, debian_security_mirror
from .model import CONSOLE_TTY, Cluster, Firmware, Role
from .run import require, run
from .writer import staging


class ImageFormat(enum.Enum):
    QCOW2 = "qcow2"
    RAW = "raw"
    TAR = "tar"


# Elements every role image is made of, by firmware; the role's own element goes last.
FIRMWARE_ELEMENTS = {
    Firmware.HYBRID: ("vm", "debian-minimal", "block-device-efi", "baremetal", "lvs-secure-boot"),
    Firmware.BIOS: ("vm", "debian-minimal", "block-device-mbr", "baremetal"),
}
HOSTSHIMS = Path(__file__).resolve().parent / "hostshims"
FAT_STAGES = Path("/run/lvs-builder-fat")  # hostshims/mount's directories standing in for FAT partitions
_STEP = re.compile(r"dib-run-parts Running \S*/(\w[\w-]*\.d)/(\S+)")
# diskimage-builder's temporary dirs, as its log names them (what a failed build must not leave).
DIB_TMP_DIR = re.compile(r"(/\S*/dib_(?:image|build)\.[A-Za-z0-9]+)")


# The kernel command line the image's own boot loader gives (diskimage-builder's root label,
# its serial console, our net.ifnames=0), for booting the image's kernel and initrd directly
# (QEMU -kernel, a PXE entry): the same system, without the boot loader's detour.
CONSOLE_CMDLINE = f"console=tty0 console={CONSOLE_TTY},115200 net.ifnames=0"
DIRECT_BOOT_CMDLINE = f"root=LABEL=cloudimg-rootfs ro {CONSOLE_CMDLINE}"


@dataclass(frozen=True)
class BuiltImage:
    image: Path
    kernel: Path
    initrd: Path
    log: Path
    seconds: float
    firmware: Firmware = Firmware.HYBRID


def firmware_file(image: Path) -> Path:
    """Beside an image: the firmware it was built for (what `lab` and `build-pxe` check)."""
    return image.with_name(image.name + ".firmware")


def firmware_of(image: Path) -> Firmware:
    """The firmware an image was built for; BIOS if it does not say (built before there was a
    choice)."""
    try:
        return Firmware(firmware_file(image).read_text().strip())
    except (OSError, ValueError):
        return Firmware.BIOS


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lvs-builder" / "dib"


def has_device_mapper() -> bool:
    try:
        return any(line.split()[-1] == "device-mapper" for line in Path("/proc/misc").read_text().splitlines())
    except OSError:
        return False


def has_vfat() -> bool:
    """Can this kernel mount FAT (a hybrid image's EFI system partition)?"""
    try:
        return any(line.split()[-1] == "vfat" for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


def needs_hostshims(firmware: Firmware) -> bool:
    return not has_device_mapper() or (firmware is not Firmware.BIOS and not has_vfat())


def image_name(cluster: Cluster, role: Role) -> str:
    return f"{role.package}-{cluster.release.value}"


def apt_sources(release: str) -> str:
    """diskimage-builder's DIB_APT_SOURCES_CONF from this machine's apt configuration."""
    mirror = debian_mirror()
    lines = [f"default:deb {mirror} {release} main", f"updates:deb {mirror} {release}-updates main"]
    security = debian_security_mirror()
    if security:
        lines.append(f"security:deb {security} {release}-security main")
    return "\n".join(lines)


def element(deb: Path) -> str:
    """The element that installs a package of ours: its name (lvs-director, lvs-cluster-key, ...),
    from the .deb's name."""
    return deb.name.split("_", 1)[0]


def dib_environment(cluster: Cluster, role: Role, deb: Path, extra: Sequence[Path] = (),
                    firmware: Firmware = Firmware.HYBRID) -> dict[str, str]:
    env = {
        "DIB_RELEASE": cluster.release.value,  # explicit: the mirror's `stable` moves
        "DIB_APT_SOURCES_CONF": apt_sources(cluster.release.value),
        "DIB_IMAGE_CACHE": str(cache_dir()),
        # Keep and reuse the bootstrapped base; install.d/00-up-to-date still upgrades it.
        "DIB_DEBOOTSTRAP_CACHE": "1",
        "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1",
        "ELEMENTS_PATH": str(data_root() / "elements"),
        f"DIB_LVS_{role.value.upper()}_DEB": str(deb.resolve()),
    }
    for other in extra:  # each element's DIB_LVS_<NAME>_DEB
        env[f"DIB_{element(other).upper().replace('-', '_')}_DEB"] = str(other.resolve())
    # disk-image-create's helpers (dib-block-device, ...) are installed beside our Python.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    if needs_hostshims(firmware):
        path = f"{HOSTSHIMS}:{path}"
    env["PATH"] = path
    return env


def disk_image_create() -> Path:
    """diskimage-builder's entry point: beside our Python (a venv), else on PATH."""
    beside = Path(sys.executable).parent / "disk-image-create"
    return beside if beside.exists() else Path(require("disk-image-create", "pip install diskimage-builder"))


def check_tools(firmware: Firmware = Firmware.HYBRID) -> None:
    """Fail before anything is built if a tool the image build needs is missing."""
    tools = [("debootstrap", "debootstrap"), ("qemu-img", "qemu-utils"), ("sfdisk", "fdisk"),
             ("losetup", "mount"), ("sudo", "sudo")]
    if firmware is not Firmware.BIOS:
        tools += [("sgdisk", "gdisk"), ("mkfs.vfat", "dosfstools")]  # GPT, the EFI system partition
        if not has_vfat():
            tools.append(("mcopy", "mtools"))  # hostshims/umount writes the EFI system partition with it
    for tool, pkg in tools:
        require(tool, pkg)
    disk_image_create()


def build(cluster: Cluster, role: Role, deb: Path, out: Path, fmt: ImageFormat,
          on_step: Callable[[str], None] = lambda s: None, extra: Sequence[Path] = (),
          firmware: Firmware = Firmware.HYBRID) -> BuiltImage:
    """Build the role image into out/, atomically; the full log goes to out/<name>.log.
    `extra` are the other packages of ours it is installed with, each by its element: the
    director's keys (lvs-cluster-key), the repository's entry (lvs-apt-source)."""
    check_tools(firmware)
    env = dib_environment(cluster, role, deb, extra, firmware)
    dib = disk_image_create()
    name = image_name(cluster, role)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{name}.{fmt.value}.log"
    log.write_text("")
    last = ["start"]

    def step(line: str) -> None:
        m = _STEP.search(line)
        if m:
            last[0] = f"{m.group(1)}/{m.group(2)}"
            on_step(last[0])
        elif "Converting image using qemu-img" in line:
            last[0] = "convert"
            on_step("convert (qemu-img)")

    final = out / f"{name}.{fmt.value}"
    # Without device-mapper the partitions are loops on a loop, where fstrim has no discard to
    # do on a tmpfs: build on disk there.
    options = [] if has_device_mapper() else ["--no-tmpfs"]
    if fmt is ImageFormat.QCOW2:
        # qcow2's clusters compressed with zstd, not zlib: the director's image converts in 7 s,
        # not 26, and is a little smaller (QEMU 5.1 or later reads it).
        options += ["--qemu-img-options", "compression_type=zstd"]
    start = time.monotonic()
    with staging(final) as tmp:
        try:
            run([dib, "-a", "amd64", "-t", fmt.value, *options, "-o", tmp / name, *FIRMWARE_ELEMENTS[firmware],
                 f"lvs-{role.value}", *(element(d) for d in extra)], env=env, log_file=log,
                on_line=step)
        except ToolError as e:
            _release(log)
            raise ToolError(f"disk-image-create (failed in {last[0]}; full log: {log})", e.returncode, e.tail) from None
        built = tmp / f"{name}.{fmt.value}"
        kernel, initrd = out / f"{name}.vmlinuz", out / f"{name}.initrd"
        os.replace(tmp / f"{name}.vmlinuz", kernel)
        os.replace(tmp / f"{name}.initrd", initrd)
        firmware_file(built).write_text(firmware.value + "\n")
        os.replace(firmware_file(built), firmware_file(final))
        # The director's root file system holds the cluster's keys (lvs-cluster-key): its owner's
        # only (QEMU, build-pxe and dd run as that owner); the kernel and initramfs carry no key.
        os.chmod(built, KEY_MODE if role is Role.DIRECTOR else 0o644)
        os.replace(built, final)  # last: an image in out/ is a complete one
    return BuiltImage(final, kernel, initrd, log, time.monotonic() - start, firmware)



def _release(log: Path) -> None:
    """What a failed build left behind (diskimage-builder's rollback does not always clean up):
    mounts under its temporary dirs, the loop devices on its image file, the partition loops
    and /dev/mapper names stacked on those, and the temporary dirs themselves."""
    dirs = set(DIB_TMP_DIR.findall(log.read_text(errors="replace")))
    if not dirs:
        return
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mountpoint in sorted((m for m in mounts if any(m == d or m.startswith(d + "/") for d in dirs)),
                             key=len, reverse=True):
        run(["umount", "--lazy", mountpoint], check=False)
    listing = run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], check=False).stdout
    loops = {}
    for line in listing.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            loops[parts[0]] = parts[1].strip()
    ours = {dev for dev, back in loops.items() if any(back.startswith(d + "/") for d in dirs)}
    stacked = {dev for dev, back in loops.items() if back in ours}
    mapper = Path("/dev/mapper")
    for node in mapper.glob("loop*p*") if mapper.is_dir() else []:
        st = node.stat()
        sys_dev = Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        if sys_dev.exists() and f"/dev/{sys_dev.resolve().name}" in ours | stacked:
            node.unlink()
    for dev in sorted(stacked) + sorted(ours):
        run(["losetup", "-d", dev], check=False)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    # hostshims/mount's stand-in directories for the build's FAT partition
    for stage in FAT_STAGES.glob("*/mountpoint") if FAT_STAGES.is_dir() else []:
        if any(stage.read_text().strip().startswith(d + "/") for d in dirs):
            shutil.rmtree(stage.parent, ignore_errors=True)
