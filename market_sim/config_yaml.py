"""Reading a config file: UTF-8 YAML, each key once, every failure one line with line/column.

PyYAML's ``safe_load`` keeps the last of two equal keys (a typo'd copy of ``seed`` silently wins),
raises on an impossible date like ``2016-02-30`` with a bare ``ValueError``, and describes a
syntax error over five lines. A scenario file is read here instead, so that each of those
is a :class:`YamlError` of one line that :func:`market_sim.config.load_config` reports like any
other bad value. Bare names (``quickstart``) resolve to the configs shipped in the package, so
that ``market-sim run quickstart`` works after a plain ``pip install``.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node


class YamlError(ValueError):
    """A file that is not a readable scenario: one line naming the file, where and why."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reports bad dates at their place."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, list | dict):
                    continue  # unhashable keys: the base constructor names the problem
                if key in seen:
                    raise ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {seen[key]}); "
                        "allowed: each key once",
                        key_node.start_mark,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: Node):  # noqa: ANN201 (PyYAML's own signature)
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as error:
            raise ConstructorError(
                None, None, f"{node.value!r} is not a date ({error})", node.start_mark
            ) from None


#: YAML 1.1 (PyYAML) reads ``1e-3`` (no dot) as a string; YAML 1.2 and every user mean a float
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789")
)
_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictLoader.construct_yaml_timestamp)


def _one_line(error: yaml.YAMLError) -> str:
    """A PyYAML error as "line L, column C: problem (context)", without the source excerpt."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return " ".join(str(error).split())
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = " ".join(str(error.problem or "").split())
    context = f" ({' '.join(error.context.split())})" if error.context else ""
    return f"{where}{problem}{context}"


def parse_yaml(text: str, source: str = "YAML") -> object:
    """Parse YAML text strictly (duplicate keys refused); raise :class:`YamlError`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise YamlError(f"{source}: not valid YAML at {_one_line(error)}") from None


def shipped_configs() -> dict[str, Path]:
    """The example scenarios shipped in the package, by bare name (``quickstart`` -> path)."""
    folder = files("market_sim") / "configs"
    return {
        p.name.removesuffix(".yaml"): Path(str(p))
        for p in folder.iterdir()
        if p.name.endswith(".yaml")
    }


def resolve_config(name: str | Path) -> Path:
    """A config argument as a path: an existing path as given, else a shipped config's name.

    A bare name (no folder part) that is not a file, such as ``quickstart`` or
    ``quickstart.yaml``, names a config shipped with the package.
    """
    path = Path(name)
    if path.exists() or path.parent != Path("."):
        return path
    return shipped_configs().get(path.name.removesuffix(".yaml"), path)


def read_yaml(name: str | Path) -> tuple[object, str]:
    """The parsed content of a config file and the path it was read from, for messages.

    Raises :class:`YamlError` for a missing file, a folder, bytes that are not UTF-8 and
    YAML that does not parse or repeats a key.
    """
    path = resolve_config(name)
    if path.is_dir():
        raise YamlError(f"{path}: is a folder; allowed: a YAML config file")
    if not path.is_file():
        shipped = ", ".join(sorted(shipped_configs()))
        raise YamlError(
            f"{path}: no such config file; allowed: a path to a YAML file or the name of a "
            f"shipped config ({shipped})"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlError(
            f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            "allowed: a UTF-8 encoded YAML file"
        ) from None
    return parse_yaml(text, str(path)), str(path)
