"""What the spec's cross-checks share: the collector of problems, each with its path in the
spec, and the checks of a port, a positive number, an interface name and a syslog facility."""

from __future__ import annotations

import re

from .errors import Problem

_IFACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_FACILITY_RE = re.compile(r"^(local[0-7]|daemon|user|syslog|auth|authpriv|none|/\S+)$")


class Collector:
    """Every problem found, each with its path in the spec."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))


def _port(c: Collector, path: str, port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        c.add(path, f"{port} is not a port (1-65535)")


def _positive(c: Collector, path: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        c.add(path, f"must be greater than 0, got {value:g}")
