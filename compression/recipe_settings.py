"""The recipe's knobs on a command line, generated from the config dataclasses (compression/config.py):
one source of names, defaults and help — the fields and the comments beside them — read by
`compress --set section.key=value` and listed by `compress --help-recipe`."""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
from typing import Any

from compression.config import FactorizeConfig, GraphConfig, PruneConfig, QuantizeConfig, RecoverConfig
from compression.errors import ConfigError

SECTIONS: dict[str, type] = {
    "factorize": FactorizeConfig,
    "recover": RecoverConfig,
    "quantize": QuantizeConfig,
    "graph": GraphConfig,
    "prune": PruneConfig,
}
_FIELD = re.compile(r"^\s+(\w+): [^=]+=\s*[^#]*?(?:#\s*(.*))?$")


def field_help(cls: type) -> dict[str, str]:
    """Each field's comment: the one on its line, else the comment lines just above it."""
    helps, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        m = _FIELD.match(line)
        if m:
            helps[m.group(1)] = m.group(2) or " ".join(above)
        above = [] if not stripped.startswith("#") else above
    return helps


def parse_value(text: str) -> Any:
    """A TOML value (true, 0.5, 64, "text"), 'none' for None, or else the bare text as a string."""
    if text.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """`section.key=value` strings → {section: {key: value}}; unknown sections and keys name the known ones."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: write section.key=value (see --help-recipe)")
        if section not in SECTIONS:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}; known: {', '.join(SECTIONS)}")
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        if key not in known:
            raise ConfigError(f"--set {item!r}: {section} has no {key!r}; known: {', '.join(sorted(known))}")
        out.setdefault(section, {})[key] = parse_value(value.strip())
    return out


def recipe_help(defaults: dict[str, Any]) -> str:
    """Every knob with the default recipe's value and its help, for --help-recipe."""
    lines = [
        "Recipe settings: compress --set section.key=value (repeatable); values are TOML (true, 0.5, 64,"
        ' "text") or none.',
        "",
    ]
    for section, cls in SECTIONS.items():
        helps = field_help(cls)
        lines.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            value = defaults.get(section, {}).get(f.name, f.default)
            lines.append(f"  {section}.{f.name} = {value!r}")
            if helps.get(f.name):
                lines.append(f"      {helps[f.name]}")
        lines.append("")
    return "\n".join(lines)
