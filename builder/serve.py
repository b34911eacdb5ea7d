"""Serving a directory over HTTP to an access policy: what `repo serve` and `pxe serve` share.

- It listens only on the address it is given (never every address).
- It lists no directory and serves no dot-file (a name beginning with '.': the metadata the
  builders keep beside what they publish).
- A file the policy calls private (the directors' own files) goes only to the
  addresses the policy names for it: the directors'. Anyone else gets 403, as does an address
  outside `members` when the policy names members at all.
- Every answer is the file as it is now: HTTP dates have whole seconds, so an index published
  within the second a client last fetched it would otherwise be answered "304 Not Modified".
"""

from __future__ import annotations

import fnmatch
import functools
import http.server
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BuilderError


@dataclass(frozen=True)
class Policy:
    private: tuple[str, ...]          # fnmatch patterns of request paths ("director/*") only `insiders` get
    insiders: frozenset[str]          # the directors' addresses
    members: frozenset[str] | None    # addresses served at all; None: anyone (the public files)

    def refusal(self, client: str, path: str) -> str | None:
        """Why `client` may not have `path` (relative, no leading '/'), or None."""
        if self.members is not None and client not in self.members and client not in self.insiders:
            return "not a node of this cluster"
        if any(fnmatch.fnmatchcase(path, p) for p in self.private) and client not in self.insiders:
            return "served to the cluster's directors only"
        return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    policy: Policy
    say: Callable[[str], None]

    def send_head(self) -> Any:
        del self.headers["If-Modified-Since"]
        # the file it names, as the handler resolves it (unquoted, '..' and '.' dropped)
        local = Path(self.translate_path(self.path))
        rel = local.relative_to(self.directory)
        if local.is_dir() or any(part.startswith(".") for part in rel.parts):
            self.send_error(404, "no directory listings here")
            return None
        why = self.policy.refusal(self.client_address[0], rel.as_posix())
        if why is not None:
            self.send_error(403, why)
            return None
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        self.say(f"http: {self.client_address[0]} {format % args}")


def http_server(root: Path, address: str, port: int, policy: Policy, say: Callable[[str], None],
                what: str) -> http.server.ThreadingHTTPServer:
    """A threading HTTP server on `address`:`port` for `root` under `policy` (not yet serving)."""
    if not address:
        raise BuilderError(f"{what}: no address to listen on: say which (--address)")
    handler = type("Handler", (_Handler,), {"policy": policy, "say": staticmethod(say)})
    try:
        return http.server.ThreadingHTTPServer((address, port), functools.partial(handler, directory=str(root)))
    except OSError as e:
        raise BuilderError(f"{what}: {address}:{port}: {e.strerror}") from None
