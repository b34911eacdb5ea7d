"""One class per kind of fault: inject() and restore() against the lab's machines, and the
words the report uses. A fault asks the machines (machines.Machines: cluster.Lab, or the
tests' fake) for primitive acts: power, freeze, link, bridge isolation, the director stack's service, the web
server and its health page; it holds no cluster-manager code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .machines import Machines, Node
from .plan import HOLD_S, Kind, Target


@dataclass
class Fault:
    nodes: list[Node]
    # None: undone once the failure is detected and served around; 0: undone at once (a power
    # cycle); > 0: undone after that many seconds, whatever happened meanwhile.
    hold: float | None = None
    kind: ClassVar[Kind]
    reboots: ClassVar[bool] = False     # restore() boots machines: the lab waits for them
    cuts_off: ClassVar[bool] = False    # while injected, the node is unreachable but its agent answers
    done: ClassVar[str] = ""            # "killed", "frozen", ... for the row's summary

    def inject(self, m: Machines) -> list[str]:
        return [p for n in self.nodes if (p := self._inject(m, n))]

    def restore(self, m: Machines) -> list[str]:
        return [p for n in self.nodes if (p := self._restore(m, n))]

    def _inject(self, m: Machines, n: Node) -> str | None:
        raise NotImplementedError

    def _restore(self, m: Machines, n: Node) -> str | None:
        raise NotImplementedError

    def words(self) -> str:
        return ", ".join(f"{n.name} {self.done}" for n in self.nodes)


class PowerLoss(Fault):
    kind = Kind.POWER
    reboots = True
    done = "killed"

    def _inject(self, m: Machines, n: Node) -> str | None:
        return m.power_off(n)

    def _restore(self, m: Machines, n: Node) -> str | None:
        return m.power_on(n)


class StackStop(Fault):
    kind = Kind.STOP
    done = "stopped its director stack"

    def _inject(self, m: Machines, n: Node) -> str | None:
        return m.director_stack(n, False)

    def _restore(self, m: Machines, n: Node) -> str | None:
        return m.director_stack(n, True)


class Hang(Fault):
    kind = Kind.HANG
    done = "frozen"

    def _inject(self, m: Machines, n: Node) -> str | None:
        return m.freeze(n)

    def _restore(self, m: Machines, n: Node) -> str | None:
        return m.thaw(n)


class LinkDown(Fault):
    kind = Kind.LINK
    cuts_off = True
    done = "link down"

    def _inject(self, m: Machines, n: Node) -> str | None:
        return m.set_link(n, False)

    def _restore(self, m: Machines, n: Node) -> str | None:
        return m.set_link(n, True)


class Partition(Fault):
    """Every frame between these nodes dropped (each still reaches everyone else)."""
    kind = Kind.PARTITION

    def inject(self, m: Machines) -> list[str]:
        return [p for p in [m.isolate(self.nodes, True)] if p]

    def restore(self, m: Machines) -> list[str]:
        return [p for p in [m.isolate(self.nodes, False)] if p]

    def words(self) -> str:
        return " and ".join(n.name for n in self.nodes) + " partitioned"


class WebStopped(Fault):
    kind = Kind.WEB_STOPPED
    done = "web server stopped"

    def _inject(self, m: Machines, n: Node) -> str | None:
        return m.web(n, "stop")

    def _restore(self, m: Machines, n: Node) -> str | None:
        return m.web(n, "start")


class WebHung(Fault):
    kind = Kind.WEB_HUNG
    done = "web server hung"

    def _inject(self, m: Machines, n: Node) -> str | None:
        return m.web(n, "hang")

    def _restore(self, m: Machines, n: Node) -> str | None:
        return m.web(n, "resume")


class PageBroken(Fault):
    kind = Kind.PAGE
    done = "health page broken"

    def _inject(self, m: Machines, n: Node) -> str | None:
        return m.page(n, True)

    def _restore(self, m: Machines, n: Node) -> str | None:
        return m.page(n, False)


FAULTS: dict[Kind, type[Fault]] = {f.kind: f for f in (PowerLoss, StackStop, Hang, LinkDown, Partition, WebStopped,
                                                        WebHung, PageBroken)}
TIMED = {Kind.HANG, Kind.PARTITION, Kind.LINK}


def make(kind: Kind, target: Target, nodes: list[Node]) -> Fault:
    """The fault of this kind on these nodes, held as the plan says."""
    if kind in TIMED:
        hold: float | None = HOLD_S
    elif kind is Kind.POWER and target is Target.DIRECTORS:
        hold = 0.0  # both directors power-cycled: nothing survives to detect it
    else:
        hold = None
    return FAULTS[kind](nodes, hold)
