"""How a command ends: a library error, an OS error (a read-only or full --out) or a signal
becomes one line on stderr and a non-zero exit, never a traceback; what was staged is removed
on the way out (the library's `staging` and `run` unwind on the exception raised here)."""

from __future__ import annotations

import signal
import sys
from typing import Any, NoReturn

import click

from .errors import BuilderError, Interrupted, SpecError, ToolError


def say_error(line: str) -> None:
    click.echo(line, err=True)


def fail(e: BuilderError) -> NoReturn:
    if isinstance(e, SpecError):
        for p in e.problems:
            say_error(f"error: {p}")
    elif isinstance(e, ToolError):
        say_error(f"error: {e.cmd}: " + ("not found" if e.returncode is None else f"failed (exit {e.returncode})"))
        for line in e.tail.splitlines():
            say_error(f"  | {line}")
    else:
        say_error(f"error: {e}")
    sys.exit(e.exit_code)


def _interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def _os_line(e: OSError) -> str:
    """An OS error as one line naming the file: "out: Read-only file system"."""
    where = e.filename if e.filename is not None else ""
    if e.filename2 is not None:
        where = f"{where} -> {e.filename2}"
    return f"{where}: {e.strerror or e}" if where else str(e.strerror or e)


WARNINGS = "lvs-builder.warnings"


def warn_later(warnings: list[Any]) -> None:
    """The spec's warnings, said once the command has done its work: a command that fails
    says one line, its error."""
    click.get_current_context().meta.setdefault(WARNINGS, []).extend(warnings)


class Command(click.Command):
    """A command that turns library errors, OS errors (a read-only or full --out) and signals
    (Ctrl-C, SIGTERM, SIGHUP: everything staged is removed on the way out) into one line each
    and a non-zero exit, also when it runs on its own (build-deb, build-image). The spec's
    warnings follow what it did."""

    def invoke(self, ctx: click.Context) -> Any:
        previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            result = super().invoke(ctx)
            for w in ctx.meta.pop(WARNINGS, []):
                say_error(f"warning: {w}")
            return result
        except BuilderError as e:
            fail(e)
        except OSError as e:
            say_error(f"error: {_os_line(e)}")
            sys.exit(1)
        except (KeyboardInterrupt, Interrupted) as e:
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            say_error(f"error: stopped by {signal.Signals(signum).name}; what was being built was removed")
            sys.exit(128 + signum)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Group(click.Group):
    command_class = Command
