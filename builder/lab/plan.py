"""The lab's failure scenarios, as data: which faults, on which machines, what is expected.

A scenario is a row of SCENARIOS; a fault kind is a class in faults.py. Adding a fault is one
class there and a row here; the runner (scenario.py) does not change."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    POWER = "power loss"            # the VM's QEMU is killed; powered on again
    STOP = "clean stop"             # the director stack's service stopped; started again
    HANG = "hang"                   # the VM frozen (QMP stop); resumed
    PARTITION = "partition"         # every frame between the two directors dropped on the bridge; healed
    LINK = "link down"              # the VM's NIC link down (QMP set_link); up again
    WEB_STOPPED = "web server stopped"
    PAGE = "health page broken"     # the check page no longer holds the receive string
    WEB_HUNG = "web server hung"    # its processes SIGSTOPped; continued


class Target(enum.Enum):
    ACTIVE = "the active director"
    STANDBY = "the standby director"
    DIRECTORS = "both directors"
    ONE_REAL = "one real server"
    ALL_REALS = "every real server"


class After(enum.Enum):
    """Who must hold the VIPs once the cluster converged again."""
    SURVIVOR = "the survivor"   # auto_failback off: the director that served through the fault
    EITHER = "either"           # one director, whichever


HOLD_S = 30.0  # how long a hang, a partition or a link-down lasts before it is undone


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    faults: tuple[tuple[Kind, Target], ...]
    transfer: bool = False      # a long download through the VIP spans the failure
    takeover: bool = False      # the standby must hold every VIP while the fault lasts
    after: After = After.SURVIVOR
    default: bool = True        # run when no --scenario is given (CI's lab); every key runs with --scenario

    @property
    def director_fault(self) -> tuple[Kind, Target] | None:
        return next(((k, t) for k, t in self.faults if t in (Target.ACTIVE, Target.STANDBY, Target.DIRECTORS)),
                    None)

    @property
    def real_target(self) -> Target | None:
        return next((t for _, t in self.faults if t in (Target.ONE_REAL, Target.ALL_REALS)), None)


P, S, A, ONE, ALL = Kind.POWER, Kind.STOP, Target.ACTIVE, Target.ONE_REAL, Target.ALL_REALS
SCENARIOS = (
    # The tutorial's five failure tests; a director fails both ways.
    Scenario("1", "one web server fails", ((P, ONE),)),
    Scenario("2-kill", "the active director fails (power loss), a long download in flight", ((P, A),),
             transfer=True, takeover=True),
    Scenario("2-stop", "the active director fails (heartbeat stopped)", ((S, A),), takeover=True),
    Scenario("3-kill", "one web server and the active director fail (power loss)", ((P, ONE), (P, A)),
             takeover=True),
    Scenario("3-stop", "one web server fails, the active director's heartbeat stops", ((P, ONE), (S, A)),
             takeover=True),
    Scenario("4", "both web servers fail: the active director serves the fallback", ((P, ALL),)),
    Scenario("5-kill", "both web servers and the active director fail (power loss)", ((P, ALL), (P, A)),
             takeover=True),
    Scenario("5-stop", "both web servers fail, the active director's heartbeat stops", ((P, ALL), (S, A)),
             takeover=True),
    # The faults that break real HA pairs first.
    Scenario("hang", f"the active director hangs for {HOLD_S:.0f} s (VM frozen), then resumes",
             ((Kind.HANG, A),), takeover=True, after=After.EITHER),
    Scenario("partition", f"the two directors cannot reach each other for {HOLD_S:.0f} s (both still reach "
             "the reals and the client), then heal", ((Kind.PARTITION, Target.DIRECTORS),), after=After.EITHER),
    Scenario("link", f"the active director's cluster link is down for {HOLD_S:.0f} s, then up",
             ((Kind.LINK, A),), takeover=True, after=After.EITHER),
    Scenario("real-stopped", "one web server's web server is stopped", ((Kind.WEB_STOPPED, ONE),)),
    Scenario("real-page", "one web server's health page no longer says the receive string", ((Kind.PAGE, ONE),)),
    Scenario("real-hung", "one web server's web server hangs (SIGSTOP)", ((Kind.WEB_HUNG, ONE),)),
    # Also tried, on request (--scenario): power cycles of the standby and of both directors.
    Scenario("standby-kill", "the standby director loses power", ((P, Target.STANDBY),), default=False),
    Scenario("directors-kill", "both directors lose power at once and come back", ((P, Target.DIRECTORS),),
             after=After.EITHER, default=False),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)
DEFAULT_SCENARIO_KEYS = tuple(s.key for s in SCENARIOS if s.default)
