"""The lab's client: sends HTTP requests to one VIP, one new connection each, all the time,
and writes one JSON line per request: when it started and ended (CLOCK_MONOTONIC, the same
clock as the lab's), whether it succeeded, and who answered (the real server named on the
page, or "fallback" for a director's fallback page).

Requests start at a fixed rate whatever the previous ones do (open loop, like independent
users), each in its own thread: a request may wait a few seconds for its connection (under
emulation a busy VM answers late; a browser waits too) without blurring when the service
came back. Lines are written as requests end, so they are not in start order.

It runs inside the lab's network namespace (`python3 -m builder.labclient ...`) and stops on
SIGTERM. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import threading
import time
from typing import Any

SERVED_BY = re.compile(rb"Served by real server ([A-Za-z0-9.-]+)")


def request(host: str, port: int, path: str, connect_timeout: float, timeout: float,
            fallback_marker: bytes) -> dict[str, Any]:
    t0 = time.monotonic()
    rec: dict[str, Any] = {"t0": t0}
    try:
        with socket.create_connection((host, port), timeout=connect_timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lvs-lab\r\n\r\n".encode())
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        data = b"".join(chunks)
        status = data.split(b"\r\n", 1)[0]
        m = SERVED_BY.search(data)
        if not status.startswith(b"HTTP/1.") or b" 200 " not in status + b" ":
            rec.update(ok=False, error=status.decode(errors="replace") or "empty reply")
        elif m:
            rec.update(ok=True, who=m.group(1).decode())
        elif fallback_marker in data:
            rec.update(ok=True, who="fallback")
        else:
            rec.update(ok=False, error="a page that names no server")
    except OSError as e:
        rec.update(ok=False, error=type(e).__name__ if not str(e) else str(e))
    rec["t1"] = time.monotonic()
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="labclient")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--path", default="/")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between request starts")
    p.add_argument("--connect-timeout", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--fallback-marker", default="Service degraded")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    lock = threading.Lock()
    with open(args.out, "a", buffering=1) as out:

        def one() -> None:
            rec = request(args.host, args.port, args.path, args.connect_timeout, args.timeout,
                          args.fallback_marker.encode())
            with lock:
                out.write(json.dumps(rec) + "\n")

        next_start = time.monotonic()
        while not stop:
            threading.Thread(target=one, daemon=True).start()
            next_start += args.interval
            time.sleep(max(0.0, next_start - time.monotonic()))
        for t in threading.enumerate():
            if t is not threading.current_thread():
                t.join(args.connect_timeout + args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
