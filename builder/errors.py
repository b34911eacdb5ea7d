"""The error types the CLI turns into one line and a non-zero exit."""

from __future__ import annotations

from dataclasses import dataclass


class BuilderError(Exception):
    """Anything the user can act on: bad input, a missing tool, a failed build step."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(BuilderError):
    """The spec is invalid; carries every problem found, each naming its path."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ToolError(BuilderError):
    """An external command failed or is missing."""

    def __init__(self, cmd: str, returncode: int | None, tail: str = ""):
        self.cmd = cmd
        self.returncode = returncode
        self.tail = tail
        what = "not found" if returncode is None else f"failed (exit {returncode})"
        msg = f"{cmd}: {what}"
        if tail:
            msg += "\n" + tail
        super().__init__(msg)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C (every staging directory removed, every child
    stopped), past any `except Exception`."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signum)
