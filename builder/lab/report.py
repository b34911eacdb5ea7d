"""The lab's report: one row per functional check, scenario and upgrade step; a table and JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# What each column of the table means (README and `--json` name the same fields).
COLUMNS = {
    "result": "pass or FAIL: the row's expectation (below) held",
    "detected (s)": "failure -> the survivor's own log said it saw it (directors), or the real server was out "
                    "of every virtual service listing it on the serving director (weight 0 or gone)",
    "served again (s)": "failure -> the end of the outage: the first good answer after the last bad one, per VIP; "
                        "the slowest VIP's (0: no request went bad)",
    "requests sent / failed": "every VIP's client, from the failure until converged again",
    "two holders (s)": "seconds in which two directors reachable from the segment held one VIP at once "
                       "(their own addresses, sampled each second)",
    "no holder (s)": "seconds in which no reachable director held a VIP",
    "ARP": "the client's neighbour entry for every VIP names the holder's MAC at the end (yes/no); "
           "seconds it named another while one director held the VIP",
    "VIP at end": "the director holding every VIP when the row ended",
}


@dataclass
class Row:
    """One line of the report: a functional check, a scenario or an upgrade step."""
    kind: str                       # "check" | "scenario" | "upgrade"
    key: str
    title: str
    ok: bool
    detail: str = ""
    detected_s: float | None = None
    detected: dict[str, float] = field(default_factory=dict)
    served_again_s: float | None = None
    served_again: dict[str, float | None] = field(default_factory=dict)  # per VIP
    sent: int | None = None
    failed: int | None = None
    failed_restoring: int | None = None  # of `failed`: from the restore on (machines coming back, resumed, healed)
    vip_at_end: str | None = None
    seconds: float | None = None
    at_s: float | None = None   # seconds into the lab when the fault was injected (or the step began)
    transfer: dict[str, Any] | None = None  # the download that spanned the failure, if any
    two_holders_s: float | None = None
    no_holder_s: float | None = None
    arp_followed: bool | None = None   # at the end, the client's entry for every VIP names its holder
    arp_stale_s: float | None = None   # seconds the client's entry named another than the one holder
    after_restore: dict[str, Any] | None = None  # two_holders_s, no_holder_s, failed: from the restore on


@dataclass
class Report:
    cluster: str
    release: str
    rows: list[Row] = field(default_factory=list)
    boot: str = "disk"                 # "disk": the role images; "pxe": diskless from the PXE tree
    # "direct": the images' kernel booted by QEMU (the fault rows' shortcut); "bios", "uefi",
    # "uefi-secure": through that firmware and the image's (or the PXE tree's) boot loader
    firmware: str = "direct"
    directors: str = "lvs-director"    # or "keepalived (bench peer)": bench/run's side-by-side
    boot_s: float | None = None        # VMs started -> every guest agent answers
    serving_s: float | None = None     # VMs started -> the first answer through the VIP
    healthy_s: float | None = None     # VMs started -> every check passes
    total_s: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what happened that is not the cluster's doing
    # The longest gap between a peer's heartbeats each director logged this boot ("Late
    # heartbeat", logged past warntime; 0: none that late): the margin left under deadtime.
    late_heartbeat_ms: dict[str, int] = field(default_factory=dict)
    vips: list[str] = field(default_factory=list)  # the virtual services the clients request

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.rows) and all(r.ok for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), ok=self.ok, columns=COLUMNS)

    def table(self) -> str:
        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        def arp(r: Row) -> str:
            if r.arp_followed is None:
                return "-"
            return ("yes" if r.arp_followed else "no") + ("" if not r.arp_stale_s else f", {r.arp_stale_s:.1f} s off")

        source = "the PXE tree, diskless" if self.boot == "pxe" else "the disk images"
        source += {"direct": "", "bios": ", through BIOS", "uefi": ", through UEFI",
                   "uefi-secure": ", through UEFI with Secure Boot on"}.get(self.firmware, f", {self.firmware}")
        lines = [
            f"lab: cluster {self.cluster} ({self.release}, booted from {source}, directors: {self.directors}"
            + (f"; clients on {', '.join(self.vips)}" if self.vips else "") + "); "
            f"VMs up in {num(self.boot_s)} s, "
            f"VIP served after {num(self.serving_s)} s, all checks passed after {num(self.healthy_s)} s; "
            f"total {num(self.total_s)} s",
            "",
            "| # | check / scenario | result | detected (s) | served again (s) | requests sent / failed "
            "| two holders (s) | no holder (s) | ARP | VIP at end | details |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            reqs = "-" if r.sent is None else f"{r.sent} / {r.failed}"
            lines.append(f"| {r.key} | {r.title} | {'pass' if r.ok else 'FAIL'} | {num(r.detected_s)} | "
                         f"{num(r.served_again_s)} | {reqs} | {num(r.two_holders_s)} | {num(r.no_holder_s)} | "
                         f"{arp(r)} | {r.vip_at_end or '-'} | {r.detail} |")
        if self.late_heartbeat_ms:
            lines += ["", "late heartbeats (longest gap logged past warntime, this boot): " + ", ".join(
                f"{k} {f'{v} ms' if v else 'none'}" for k, v in self.late_heartbeat_ms.items())]
        lines += ["", *(f"note: {n}" for n in self.notes)] if self.notes else []
        if self.error:
            lines += ["", f"lab stopped: {self.error}"]
        lines += ["", "lab: all checks and scenarios passed" if self.ok else "lab: FAILED"]
        return "\n".join(lines)
