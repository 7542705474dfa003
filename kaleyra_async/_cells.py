"""A row's cells read as the campaign asks (pure): ``{name}`` placeholders in a body filled from
the row's columns (``{{`` and ``}}`` stand for braces), and ``ref_custom`` cells.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from ._exceptions import ValidationError

__all__ = ["fill_placeholders", "has_placeholders", "placeholders", "ref_custom_cell"]

#: ``{name}`` is a placeholder; ``{{`` and ``}}`` are literal braces. ``{#var#}`` (India's DLT
#: template slot) contains ``#`` and is therefore left alone.
_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([^{}#]+)\}")


def has_placeholders(body: str) -> bool:
    """Whether the body has a placeholder or an escaped brace to fill."""
    return _PLACEHOLDER.search(body) is not None


def placeholders(body: str) -> list[str]:
    """The column names a body's ``{name}`` placeholders use, in order."""
    return [m.group(1).strip() for m in _PLACEHOLDER.finditer(body) if m.group(1)]


def fill_placeholders(body: str, fields: Mapping[str, str]) -> str:
    """The body with each ``{name}`` replaced by the row's ``name`` column (``{{``, ``}}``: a
    brace).

    Raises:
        ValidationError: ``body`` / ``placeholder``: a placeholder names no column.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1).strip()
        if name not in fields:
            raise ValidationError("body", "placeholder", f"placeholder {{{name}}} has no column")
        return fields[name]

    return _PLACEHOLDER.sub(replace, body)


def ref_custom_cell(cell: str) -> tuple[str, ...]:
    """A ``ref_custom`` cell: a JSON array of strings (``["John","Doe"]``), or one value."""
    if not cell.startswith("["):
        return (cell,)
    try:
        values = json.loads(cell)
    except ValueError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValidationError(
            "ref_custom", "format", f'{cell!r} is not a JSON array of strings like ["a","b"]'
        )
    return tuple(values)
