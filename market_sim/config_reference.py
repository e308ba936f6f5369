"""The README's "Config reference": every field of the scenario schema, generated from it.

One table per section of :class:`~market_sim.config.ScenarioConfig` (type, default, allowed
values, meaning), read from the pydantic fields: their annotations, constraints, registry
families and descriptions. ``python -m market_sim.config_reference`` prints it; a test keeps
the README in step with it, so the documentation cannot drift from what is validated.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from typing import Annotated, Literal, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from market_sim.config import PATTERN_WORDS, ScenarioConfig
from market_sim.registry import Family

HEADING = "## Config reference"
INTRO = (
    "Every field of a scenario file, generated from the schema in `market_sim/config.py` "
    "(`python -m market_sim.config_reference` prints this section). Values are checked "
    "strictly: no unknown fields, no NaN or infinity, no coercion (`seed: true` or "
    '`seed: "7"` is an error). `dsos[]` means each entry of the list `dsos`; a field is '
    "required where its default is blank. Any field can be overridden on the command line: "
    "`--set dsos.0.pv_scale=2`."
)

_TYPES = {float: "number", int: "integer", str: "text", bool: "true/false", dt.date: "date"}


def config_markdown() -> str:
    """The README section: a heading, an introduction and one table per schema section."""
    return "\n".join([HEADING, "", INTRO, "", *_tables("", ScenarioConfig)]) + "\n"


def _tables(path: str, model: type[BaseModel]) -> list[str]:
    """The table of ``model`` at ``path``, then its sections' tables, depth first.

    A section class used by several fields of one model (the five prices) is one table at
    ``path.*``.
    """
    title = f"`{path}`" if path else "the scenario (top level)"
    doc = " ".join((model.__doc__ or "").split())
    lines = [f"### {title}", "", *([doc, ""] if doc else [])]
    lines += ["| field | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    below: dict[type[BaseModel], str] = {}
    uses = [_section(f.annotation)[0] for f in model.model_fields.values()]
    for name, field in model.model_fields.items():
        sub, many = _section(field.annotation)
        if sub is not None and sub not in below:
            shared = uses.count(sub) > 1
            where = f"{path}.{'*' if shared else name}" if path else name
            below[sub] = where + ("[]" if many else "")
        lines.append(_row(name, field, sub, many, below.get(sub, "")))
    lines.append("")
    for sub, where in below.items():
        lines += _tables(where, sub)
    return lines


def _section(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The section model of a field (or of its list entries) and whether it is a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if get_origin(annotation) is list:
        inner = get_args(annotation)[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner, True
    return None, False


def _row(name: str, field: FieldInfo, sub: type | None, many: bool, where: str) -> str:
    if sub is not None:
        kind = "list of sections" if many else "section"
        meaning = f"see `{where}`" + (f": {field.description}" if field.description else "")
        default = "" if field.is_required() or many else "its fields' defaults"
        if not field.is_required() and not many and field.default != sub.model_construct():
            default = f"`{_value(field.default.model_dump(mode='json'))}`"
        allowed = _allowed(field, field.annotation)
    else:
        kind = _type(field.annotation)
        default = "" if field.is_required() else f"`{_value(field.default)}`"
        allowed = _allowed(field, field.annotation)
        meaning = field.description or ""
    return f"| `{name}` | {kind} | {default} | {allowed} | {_cell(meaning)} |"


def _type(annotation: object) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0])
    if origin is Literal:
        return _type(type(args[0]))
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type(a) for a in args)
    return _TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _allowed(field: FieldInfo, annotation: object) -> str:
    """What validation accepts, in words: bounds, members, patterns, list lengths."""
    found = _constraints(field.metadata, "character" if annotation is str else "entry")
    if get_origin(annotation) is list:
        found += [f"each {c}" for c in _scalar(get_args(annotation)[0])]
    else:
        found += _scalar(annotation)
    return "; ".join(found)


def _scalar(annotation: object) -> list[str]:
    """The constraints an annotation itself carries (Annotated metadata, Literal members)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _constraints(args[1:]) + _scalar(args[0])
    if origin is Literal:
        return ["one of " + ", ".join(f"`{_value(a)}`" for a in args)]
    if origin in (typing.Union, types.UnionType):
        return [c for a in args for c in _scalar(a)]
    return []


_BOUNDS = {at.Ge: (">=", "ge"), at.Gt: (">", "gt"), at.Le: ("<=", "le"), at.Lt: ("<", "lt")}


def _constraints(metadata, unit: str = "entry") -> list[str]:
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found += _constraints(item.metadata, unit)
        for kind, (word, attribute) in _BOUNDS.items():
            if isinstance(item, kind):
                found.append(f"{word} {_value(getattr(item, attribute))}")
        if isinstance(item, at.MinLen):
            n = item.min_length
            plural = unit + "s" if unit.endswith("r") else unit.removesuffix("y") + "ies"
            found.append(f"at least {n} {unit if n == 1 else plural}")
        if getattr(item, "pattern", None):
            found.append(PATTERN_WORDS.get(item.pattern, f"pattern `{item.pattern}`"))
        family = getattr(getattr(item, "func", None), "__self__", None)
        if isinstance(family, Family):
            found.append("one of " + ", ".join(f"`{m}`" for m in family.members))
    return found


def _value(value: object) -> str:
    """A value as it is written in a scenario file (YAML flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    print(config_markdown(), end="")
