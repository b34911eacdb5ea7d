"""The lab client's long download, against a real HTTP server on loopback: it reads the whole
body no faster than its rate and reports its size and checksum; a cut connection is reported
as a broken download, not a whole one."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import lab, labclient


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", httpd.server_address[1], root
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_download_is_read_whole_at_its_rate(server: tuple[str, int, Path]) -> None:
    host, port, root = server
    content = b"".join(b"%d\n" % i for i in range(1, 60_001))  # what seq 1 60000 writes
    (root / "big.txt").write_bytes(content)
    events = io.StringIO()
    rec = labclient.transfer(host, port, "/big.txt", rate=200_000, timeout=10, out=events)
    assert rec["ok"] is True and "error" not in rec
    assert rec["bytes"] == len(content)
    assert rec["sha256"] == hashlib.sha256(content).hexdigest()
    assert rec["t1"] - rec["t0"] >= len(content) / 200_000 * 0.9  # it did not read faster than asked
    started = json.loads(events.getvalue())
    assert started["event"] == "started" and started["port"] == rec["port"] and " 200 " in started["status"]


def test_a_missing_file_is_no_download(server: tuple[str, int, Path]) -> None:
    host, port, _ = server
    rec = labclient.transfer(host, port, "/nothing", rate=1e6, timeout=10, out=io.StringIO())
    assert rec["ok"] is False and "404" in rec["error"]


def test_a_cut_connection_is_a_broken_download() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def half_a_response() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # a reset, as a director without the connection's entry would answer

    threading.Thread(target=half_a_response, daemon=True).start()
    rec = labclient.transfer("127.0.0.1", listener.getsockname()[1], "/", rate=1e6, timeout=10, out=io.StringIO())
    listener.close()
    assert rec["ok"] is False
    assert rec["bytes"] <= 1000 and rec["error"]


def test_the_labs_download_file_is_what_seq_writes() -> None:
    import subprocess
    seq = subprocess.run(["seq", "1", str(lab.TRANSFER_LINES)], capture_output=True, check=True).stdout
    assert lab.transfer_content() == seq
    assert len(seq) / lab.TRANSFER_RATE > 40  # it lasts long enough to span a takeover
