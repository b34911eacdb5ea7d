"""The firmware a VM boots with: SeaBIOS (QEMU's own, legacy BIOS), or Debian's OVMF (UEFI),
with Secure Boot on as a server vendor ships it (Microsoft's keys enrolled) or off.

OVMF's code is read-only and shared; its variable store (boot entries, Secure Boot's keys
and state) is the VM's own copy, kept across its power cycles as a machine's NVRAM is.
"""

from __future__ import annotations

import enum
import shutil
from pathlib import Path

from .errors import ToolError

OVMF_DIR = Path("/usr/share/OVMF")


class VmFirmware(enum.Enum):
    BIOS = "bios"                # SeaBIOS
    UEFI = "uefi"                # OVMF, Secure Boot off
    UEFI_SECURE = "uefi-secure"  # OVMF, Secure Boot on, Microsoft's keys enrolled

    @property
    def uefi(self) -> bool:
        return self is not VmFirmware.BIOS

    @property
    def code(self) -> Path:
        return OVMF_DIR / ("OVMF_CODE_4M.secboot.fd" if self is VmFirmware.UEFI_SECURE else "OVMF_CODE_4M.fd")

    @property
    def vars_template(self) -> Path:
        return OVMF_DIR / ("OVMF_VARS_4M.ms.fd" if self is VmFirmware.UEFI_SECURE else "OVMF_VARS_4M.fd")


def machine_options(fw: VmFirmware) -> str:
    """What the q35 machine needs besides: Secure Boot's variable store is writable only from
    the firmware's System Management Mode."""
    return ",smm=on" if fw is VmFirmware.UEFI_SECURE else ""


def qemu_args(fw: VmFirmware, vars_copy: Path) -> list[str]:
    """QEMU's arguments for the firmware, with the VM's variable store at `vars_copy` (made
    from Debian's template the first time, its owner's only)."""
    if not fw.uefi:
        return []
    for f in (fw.code, fw.vars_template):
        if not f.exists():
            raise ToolError(f"{f} (apt-get install ovmf)", None)
    if not vars_copy.exists():
        shutil.copyfile(fw.vars_template, vars_copy)
        vars_copy.chmod(0o600)
    args = []
    if fw is VmFirmware.UEFI_SECURE:
        args += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return args + ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={fw.code}",
                   "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
