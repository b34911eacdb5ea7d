"""The lab: the cluster a spec describes, booted in VMs inside a private network namespace,
put through the Ultramonkey tutorial's checks, its five failure tests and the faults that
break real HA pairs (a hang, a partition, a cluster link down, real servers up but sick).

One concern a module:
- plan: the scenarios as data (which faults, on which machines, what is expected);
- faults: one class per kind of fault, inject() and restore();
- machines: the seam the logic below asks and acts through; cluster: the real one (the
  namespace, the VMs under QEMU, the clients, the helper processes);
- stack: the director stack (heartbeat, or bench/'s keepalived peer): the only module that
  names either;
- probes: who holds which VIP, the client's ARP view, the figures from them;
- traffic: the clients' logs, served again, the scheduler's spread; download: the long
  download across a failover;
- checks: the tutorial's functional checks, convergence, the degraded state;
- scenario: one scenario from healthy to healthy; upgrade: the rolling upgrade; rotation: the
  key rotation after it;
- report: the rows and the table; runner: all of it, torn down on every exit.

Times are reported, never asserted: under software emulation they are inflated."""

from __future__ import annotations

from ..errors import BuilderError
from .cluster import BOOT_TIMEOUT, FIRMWARE_STALL, Lab, LabNode, client_address
from .plan import DEFAULT_SCENARIO_KEYS, SCENARIO_KEYS, SCENARIOS, After, Scenario
from .report import COLUMNS, Report, Row
from .runner import run_lab
from .stack import cluster_check_module, seen_in_journal
from .traffic import TRANSFER_LINES, TRANSFER_RATE, Answer, fits_scheduler, read_answers, served_again, transfer_content
from .upgrade import Rollout

__all__ = ["After", "BOOT_TIMEOUT", "COLUMNS", "DEFAULT_SCENARIO_KEYS", "FIRMWARE_STALL", "SCENARIOS", "SCENARIO_KEYS",
           "TRANSFER_LINES", "TRANSFER_RATE", "Answer", "BuilderError", "Lab", "LabNode", "Report", "Rollout", "Row",
           "Scenario", "client_address", "cluster_check_module", "fits_scheduler", "read_answers", "run_lab",
           "seen_in_journal", "served_again", "transfer_content"]
