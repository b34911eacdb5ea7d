"""The Debian mirror this machine's apt configuration names. Never a host written in code."""

from __future__ import annotations

from pathlib import Path

from debian.deb822 import Deb822

from .errors import BuilderError

APT_DIR = Path("/etc/apt")


def _one_line_uris(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            out.append((words[0], [words[1]]))
    return out


def _deb822_uris(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for para in Deb822.iter_paragraphs(text):
        if "deb" not in para.get("Types", "").split() or para.get("Enabled", "yes") == "no":
            continue
        for uri in para.get("URIs", "").split():
            out.append((uri, para.get("Suites", "").split()))
    return out


def _sources(apt_dir: Path) -> list[tuple[str, list[str]]]:
    sources: list[tuple[str, list[str]]] = []
    main = apt_dir / "sources.list"
    if main.exists():
        sources += _one_line_uris(main.read_text(encoding="utf-8"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            if f.suffix == ".list":
                sources += _one_line_uris(f.read_text(encoding="utf-8"))
            elif f.suffix == ".sources":
                sources += _deb822_uris(f.read_text(encoding="utf-8"))
    return [(u, s) for u, s in sources if u.startswith(("http://", "https://", "file:/"))]


def _is_security(uri: str, suites: list[str]) -> bool:
    return "security" in uri or any(s.endswith("-security") or "/updates" in s for s in suites)


def debian_security_mirror(apt_dir: Path = APT_DIR) -> str | None:
    """The URI of the configured Debian security archive, if there is one."""
    for uri, suites in _sources(apt_dir):
        if _is_security(uri, suites):
            return uri.rstrip("/")
    return None


def debian_mirror(apt_dir: Path = APT_DIR) -> str:
    """The URI of the first configured Debian archive (not the security archive)."""
    for uri, suites in _sources(apt_dir):
        if not _is_security(uri, suites):
            return uri.rstrip("/")
    raise BuilderError(f"{apt_dir}: no Debian archive in the apt configuration; add one to sources.list.d")
