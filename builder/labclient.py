"""The lab's client: sends HTTP requests to one VIP, one new connection each, all the time,
and writes one JSON line per request: when it started and ended (CLOCK_MONOTONIC, the same
clock as the lab's), whether it succeeded, and who answered (the real server named on the
page, or "fallback" for a director's fallback page).

Requests start at a fixed rate whatever the previous ones do (open loop, like independent
users), each in its own thread: a request may wait a few seconds for its connection (under
emulation a busy VM answers late; a browser waits too) without blurring when the service
came back. Lines are written as requests end, so they are not in start order.

With `--transfer`, it makes one long download instead: the file at --path, read at --rate
bytes a second through a small receive buffer, so that the transfer spans a director failover
and the client's acknowledgements keep crossing the director all along (direct routing: the
data comes straight from the real server, the client's packets go through the director). It
writes a JSON line when the response starts (its own port, to find the connection in IPVS
tables) and one when it ends (bytes, sha256, error).

It runs inside the lab's network namespace (`python3 -m builder.labclient ...`) and stops on
SIGTERM. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
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


def transfer(host: str, port: int, path: str, rate: float, timeout: float, out: Any) -> dict[str, Any]:
    """One rate-limited download; a JSON line to `out` when the body starts, the result returned."""
    t0 = time.monotonic()
    rec: dict[str, Any] = {"t0": t0, "ok": False, "bytes": 0}
    digest = hashlib.sha256()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # A fixed small window (no autotuning): the server can run ahead of our reading by
            # 64 KiB only, so every few hundred milliseconds an acknowledgement crosses the director.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.settimeout(timeout)
            s.connect((host, port))
            rec["port"] = s.getsockname()[1]
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lvs-lab\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("connection closed in the response header")
                head += chunk
            head, body = head.split(b"\r\n\r\n", 1)
            rec["status"] = head.split(b"\r\n", 1)[0].decode(errors="replace")
            out.write(json.dumps({"event": "started", "t": time.monotonic(), "port": rec["port"],
                                  "status": rec["status"]}) + "\n")
            start = time.monotonic()
            while True:
                digest.update(body)
                rec["bytes"] += len(body)
                # Read no faster than `rate`: sleep until this many bytes are due.
                time.sleep(max(0.0, start + rec["bytes"] / rate - time.monotonic()))
                body = s.recv(16384)
                if not body:
                    break
        rec.update(ok=" 200 " in rec["status"] + " ")
        if not rec["ok"]:
            rec["error"] = rec["status"]
    except OSError as e:
        rec["error"] = type(e).__name__ if not str(e) else str(e)
    rec.update(t1=time.monotonic(), sha256=digest.hexdigest())
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
    p.add_argument("--transfer", action="store_true", help="one rate-limited download of --path instead")
    p.add_argument("--rate", type=float, default=200_000, help="bytes a second, with --transfer")
    args = p.parse_args(argv)

    if args.transfer:
        with open(args.out, "a", buffering=1) as out:
            out.write(json.dumps({"event": "done", **transfer(args.host, args.port, args.path, args.rate,
                                                                args.timeout, out)}) + "\n")
        return 0

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
