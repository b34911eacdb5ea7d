"""The one wrapper every external tool goes through."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import ToolError

log = logging.getLogger("lvs_builder")

TAIL_LINES = 20


def require(tool: str, package: str | None = None) -> str:
    """Path of `tool`, or a ToolError naming the Debian package that provides it."""
    found = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        hint = f" (apt-get install {package})" if package else ""
        raise ToolError(f"{tool}{hint}", None)
    return found


STOP_GRACE = 30  # seconds a tool has to clean up after SIGTERM (diskimage-builder unmounts)


def _stop(child: subprocess.Popen[str]) -> None:
    """We are unwinding (a signal, an error): the tool gets SIGTERM and time to clean up, then SIGKILL."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    capture: bool = True,
    merge_stderr: bool = True,
    input: str | None = None,
    log_file: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, logging it exactly; on failure raise ToolError with the tail of its output.

    With log_file, the output goes there (appended) and, line by line, to on_line; merge_stderr=False
    keeps standard error out of stdout (a command whose output is data)."""
    argv = [os.fspath(c) for c in cmd]
    line = shlex.join(argv)
    log.info("$ %s", line)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if shutil.which(argv[0], path=full_env.get("PATH")) is None and not os.path.exists(argv[0]):
        raise ToolError(argv[0], None)
    out_target = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        out_target = open(log_file, "a", encoding="utf-8")
        out_target.write(f"$ {line}\n")
        out_target.flush()
    try:
        if out_target is not None:
            with subprocess.Popen(argv, env=full_env, cwd=cwd, text=True, errors="replace",
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) as child:
                assert child.stdout is not None
                try:
                    for text_line in child.stdout:
                        out_target.write(text_line)
                        if on_line is not None:
                            on_line(text_line.rstrip("\n"))
                except BaseException:
                    _stop(child)
                    raise
            proc = subprocess.CompletedProcess(argv, child.returncode, "", None)
        else:
            with subprocess.Popen(
                argv,
                env=full_env,
                cwd=cwd,
                text=True,
                stdin=subprocess.PIPE if input is not None else None,
                stdout=subprocess.PIPE if capture else None,
                stderr=(subprocess.STDOUT if merge_stderr else subprocess.PIPE) if capture else None,
            ) as child:
                try:
                    stdout, stderr = child.communicate(input)
                except BaseException:
                    _stop(child)
                    raise
            proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
    finally:
        if out_target:
            out_target.close()
    if check and proc.returncode != 0:
        if log_file is not None:
            text = log_file.read_text(encoding="utf-8", errors="replace")
        else:
            text = (proc.stdout or "") + (proc.stderr or "")
        tail = "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])
        raise ToolError(line, proc.returncode, tail)
    return proc
