"""Loading a spec: the parsed YAML mapping -> the frozen `Cluster`, or SpecError with one
Problem per mistake, each naming its path (`virtual_services[0].scheduler`). Type checks are
driven by the dataclass annotations (model); cross-checks live in validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import types
import typing
from ipaddress import IPv4Address
from typing import Any

from .checking import Collector
from .errors import Problem, SpecError
from .model import ENUM_NOUN, Cluster
from .validation import cross_check


class _Invalid:
    """Marks a value that failed to load; the problem is already recorded."""


INVALID = _Invalid()
MAX_TEXT = 1024  # characters in one text field
PAGE_TEXTS = frozenset({"pages.test.content", "pages.fallback"})  # whole files, not configuration lines

_HINTS = typing.get_type_hints


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def _load_value(tp: Any, value: Any, path: str, c: Collector) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _load_value(args[0], value, path, c)
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            c.add(path, f"expected a list, got {_describe(value)}")
            return INVALID
        items = [_load_value(item_tp, v, _join(path, i), c) for i, v in enumerate(value)]
        return INVALID if any(i is INVALID for i in items) else tuple(items)
    if dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, value, path, c)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        choices = [m.value for m in tp]
        if isinstance(value, str) and value in choices:
            return tp(value)
        c.add(path, f"{_describe(value)} is not {ENUM_NOUN.get(tp, 'a valid choice')} ({', '.join(choices)})")
        return INVALID
    if tp is IPv4Address:
        if isinstance(value, str):
            try:
                return IPv4Address(value)
            except ValueError:
                pass
        c.add(path, f"{_describe(value)} is not an IPv4 address")
        return INVALID
    if tp is bool:
        if isinstance(value, bool):
            return value
        c.add(path, f"expected yes or no, got {_describe(value)}")
        return INVALID
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        c.add(path, f"expected a whole number, got {_describe(value)}")
        return INVALID
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        c.add(path, f"expected a number of seconds, got {_describe(value)}")
        return INVALID
    if tp is str:
        if isinstance(value, str) and value != "":
            # Every other text field lands in some configuration file, one line of it: a line
            # break or another control character would add lines of its own (`user: "x\nnode
            # evil"`). A page's content is a file of its own, and may have lines.
            lines_ok = "\n\t" if path in PAGE_TEXTS else ""
            bad = next((ch for ch in value if (ord(ch) < 32 or 127 <= ord(ch) < 160) and ch not in lines_ok), None)
            if bad is not None:
                c.add(path, f"{_describe(value)} holds a control character ({bad!r}); no configuration line "
                      "may have one")
                return INVALID
            if len(value) > MAX_TEXT:
                c.add(path, f"{len(value)} characters is longer than any field needs (at most {MAX_TEXT})")
                return INVALID
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        c.add(path, f"expected text, got {_describe(value)}")
        return INVALID
    raise TypeError(f"model type {tp!r} has no loader")  # a bug in this module, not in the spec


def _load_dataclass(cls: Any, value: Any, path: str, c: Collector) -> Any:
    if not isinstance(value, dict):
        c.add(path or "spec", f"expected a mapping, got {_describe(value)}")
        return INVALID
    hints = _HINTS(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    ok = True
    for key in value:
        if not isinstance(key, str) or key not in fields:
            msg = "unknown key"
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.7)
            if close:
                msg += f"; did you mean '{close[0]}'?"
            else:
                msg += f" (known: {', '.join(fields)})"
            c.add(_join(path, str(key)), msg)
            ok = False
    for name, f in fields.items():
        sub = _join(path, name)
        if name in value:
            loaded = _load_value(hints[name], value[name], sub, c)
            if loaded is INVALID:
                ok = False
            else:
                kwargs[name] = loaded
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            c.add(sub, "required")
            ok = False
    return cls(**kwargs) if ok else INVALID


def load(data: Any, *, allow_weak_auth: bool = False) -> tuple[Cluster, list[Problem]]:
    """Validate a parsed spec. Returns the model and its warnings, or raises SpecError."""
    c = Collector()
    if not isinstance(data, dict):
        raise SpecError([Problem("spec", f"expected a mapping at the top level, got {_describe(data)}")])
    cluster = _load_dataclass(Cluster, data, "", c)
    if cluster is INVALID:
        raise SpecError(c.problems)
    warnings = cross_check(cluster, c, allow_weak_auth)
    if c.problems:
        raise SpecError(c.problems)
    return cluster, warnings


