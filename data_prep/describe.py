"""A resolved config as commented YAML: every key, its value, what it means and its default.

The meaning of each key is the comment beside its field in the config dataclass, so the
description and the defaults cannot drift apart: ``strikecast config show`` prints it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import yaml

_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the ``# ...`` beside each field in the source of ``cls``."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (a frozen build): keys without meanings
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    found = {}
    for line in source.splitlines():
        m = _FIELD.match(line)
        if m and m.group(1) in names and m.group(2):
            found.setdefault(m.group(1), m.group(2).strip())
    return found


def _value(v: Any) -> str:
    if isinstance(v, tuple):
        v = list(v)
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000)
    return text.strip().removesuffix("...").strip()


def describe_config(cfg: Any) -> str:
    """YAML of ``cfg`` (a dataclass of section dataclasses), one comment per key: its meaning,
    and its default where the value differs from it."""
    lines = []
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        defaults, comments = type(sub)(), field_comments(type(sub))
        lines.append(f"{section.name}:")
        for f in dataclasses.fields(sub):
            value, default = getattr(sub, f.name), getattr(defaults, f.name)
            notes = [comments.get(f.name, "")]
            if value != default:
                notes.append(f"default: {_value(default)}")
            note = "; ".join(n for n in notes if n.strip())
            text = f"  {f.name}: {_value(value)}"
            lines.append(f"{text:<40}  # {note}" if note else text)
    return "\n".join(lines) + "\n"
