"""Reading a spec file: bytes -> YAML mapping -> validated model.

The YAML dialect is YAML 1.1 as PyYAML reads it, with two traps closed: unquoted MAC
addresses are not sexagesimal numbers, and `on`/`off` stay words (ldirectord's checktypes).
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import loading, model
from .errors import Problem, SpecError

REFERENCE_NAME = "reference.yaml"
MAX_BYTES = 1 << 20  # a spec file; the reference cluster's is 4 KB


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE)$"),
    list("yYnNtTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?)$"),
    list("-+0123456789."))


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key if isinstance(key, (str, int, float, bool)) else id(key))
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class Source:
    """Where a spec came from: a file, or the built-in reference cluster."""

    path: Path | None
    text: str

    @property
    def label(self) -> str:
        return str(self.path) if self.path else "built-in reference cluster"


def reference_text() -> str:
    return resources.files("builder").joinpath("data", REFERENCE_NAME).read_text(encoding="utf-8")


def read_source(path: Path | None) -> Source:
    if path is None:
        return Source(None, reference_text())
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                what = "a directory" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else \
                    "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"
                raise SpecError([Problem(str(path), f"{what}, not a regular file; give the spec as a file")])
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SpecError([Problem(str(path), f"cannot read: {e.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise SpecError([Problem(str(path), f"larger than {MAX_BYTES // 1024} KiB; a spec is a few KB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError([Problem(str(path), f"not UTF-8 (byte {e.start})")]) from None
    return Source(path, text)


def parse(text: str) -> Any:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError([Problem("spec", f"{where}not valid YAML: {problem}")]) from None
    except RecursionError:
        raise SpecError([Problem("spec", "not valid YAML here: nested too deep")]) from None
    except ValueError:  # PyYAML's int(): a number of thousands of digits (Python's limit)
        raise SpecError([Problem("spec", f"a number of more than {sys.get_int_max_str_digits()} digits")]) from None
    if data is None:
        raise SpecError([Problem("spec", "empty; `lvs-builder init` writes a starter spec")])
    return data


def load_source(source: Source, *, allow_weak_auth: bool = False) -> tuple[model.Cluster, list[Problem]]:
    return loading.load(parse(source.text), allow_weak_auth=allow_weak_auth)


def load(path: Path | None, *, allow_weak_auth: bool = False) -> tuple[model.Cluster, list[Problem]]:
    return load_source(read_source(path), allow_weak_auth=allow_weak_auth)
