"""Regenerates the parts of the regen-sync chart that are derived from other sources:

- the ``config`` part of ``values.schema.json``, from the service's settings model
  (``regen_sync.config.Settings``), so the chart accepts exactly the settings the service has, with
  the same types, bounds and enums;
- ``README.md``, from ``README.tmpl.md``, the ``# --`` comments of ``values.yaml`` and the settings
  model's descriptions.

Run from the repository root after changing the settings, values.yaml or the README template:

    .venv/bin/python helm/generate.py          # rewrite
    .venv/bin/python helm/generate.py --check  # exit 1 if a file is out of date (CI)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parent / "regen-sync"
REPO_ROOT = CHART_DIR.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from regen_sync.config import ENV_PREFIX, NESTED_DELIMITER, Settings  # noqa: E402

VALUES_SCHEMA = CHART_DIR / "values.schema.json"
VALUES = CHART_DIR / "values.yaml"
README = CHART_DIR / "README.md"
README_TEMPLATE = CHART_DIR / "README.tmpl.md"
VALUES_MARKER = "@@VALUES@@"
SETTINGS_MARKER = "@@SETTINGS@@"
# Documented as a whole by the settings table, not key by key.
CONFIG_KEY = "config"

# Fields the chart fills in itself: credentials come from the Secret as files, TLS file paths
# from the kafkaTls mount. Accepting them under `config` would put secrets into a ConfigMap.
_CHART_MANAGED_FORMATS = frozenset({"password", "file-path"})
_DROPPED_KEYWORDS = frozenset({"title", "writeOnly"})
# Settings that must differ per pod: the chart sets them from a switch of its own, and its
# templates refuse them under `config` naming that switch.
CHART_SWITCHED = {("kafka", "group_instance_id"): "staticMembership.enabled"}


def _formats(schema: dict[str, Any]) -> set[str]:
    found = {schema["format"]} if "format" in schema else set()
    for option in schema.get("anyOf", []):
        found |= _formats(option)
    return found


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _DROPPED_KEYWORDS:
            continue
        if keyword == "anyOf":
            value = [_clean(option) for option in value]
        cleaned[keyword] = value
    if cleaned.get("format") == "uri":
        # JSON Schema validators rarely assert formats; a pattern makes Helm refuse non-URLs.
        cleaned["pattern"] = "^https?://"
    return cleaned


def chart_managed(schema: dict[str, Any]) -> bool:
    return bool(_formats(schema) & _CHART_MANAGED_FORMATS)


def config_schema() -> dict[str, Any]:
    """The schema of ``config``: the service's settings minus those the chart manages."""
    full = Settings.model_json_schema()
    definitions = full["$defs"]
    properties: dict[str, Any] = {}
    for name, prop in full["properties"].items():
        if "$ref" in prop:
            section = definitions[prop["$ref"].rsplit("/", 1)[1]]
            fields = {
                field: _clean(field_schema)
                for field, field_schema in section["properties"].items()
                if not chart_managed(field_schema)
            }
            section_schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": False,
                "properties": fields,
            }
            if required := [field for field in section.get("required", []) if field in fields]:
                section_schema["required"] = required
            properties[name] = section_schema
        elif not chart_managed(prop):
            properties[name] = _clean(prop)
    return {
        "type": "object",
        "description": "Settings of the service (generated from service/regen_sync/config.py by "
        "helm/generate.py).",
        "additionalProperties": False,
        "properties": properties,
        "required": [name for name in full.get("required", []) if name in properties],
    }


def values_schema_text() -> str:
    schema = json.loads(VALUES_SCHEMA.read_text())
    schema["properties"][CONFIG_KEY] = config_schema()
    return json.dumps(schema, indent=2) + "\n"


def variable_name(*path: str) -> str:
    return ENV_PREFIX + NESTED_DELIMITER.join(part.upper() for part in path)


@dataclass(frozen=True)
class Setting:
    path: tuple[str, ...]
    schema: dict[str, Any]


def settings() -> Iterator[Setting]:
    for name, prop in config_schema()["properties"].items():
        if prop.get("type") == "object":
            for field, field_schema in prop["properties"].items():
                yield Setting((name, field), field_schema)
        else:
            yield Setting((name,), prop)


def documented_values() -> dict[tuple[str, ...], str]:
    """Each key of values.yaml that has a ``# --`` comment, by path, with that comment."""
    documented: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in VALUES.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            pending = None
            continue
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.removeprefix("#").strip())
            continue
        key = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if key is None:
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(2)))
        if pending is not None:
            documented[tuple(name for _, name in stack)] = " ".join(pending)
        pending = None
    return documented


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, str(key)))
    else:
        yield path


def undocumented_values() -> list[str]:
    """Keys of values.yaml that neither have a ``# --`` comment nor sit under one that has."""
    documented = documented_values()
    values = yaml.safe_load(VALUES.read_text())
    return [
        ".".join(leaf)
        for leaf in _leaves(values)
        if not any(leaf[:depth] in documented for depth in range(1, len(leaf) + 1))
    ]


def _value_at(values: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def _declared_type(schema: dict[str, Any], path: tuple[str, ...]) -> str:
    for key in path:
        schema = schema.get("properties", {}).get(key, {})
    if "enum" in schema:
        return " | ".join(f"`{option}`" for option in schema["enum"])
    declared = schema.get("type", "object")
    return " or ".join(declared) if isinstance(declared, list) else str(declared)


def _code(value: Any) -> str:
    rendered = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
    return f"`{rendered}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def values_table() -> str:
    values = yaml.safe_load(VALUES.read_text())
    schema = json.loads(VALUES_SCHEMA.read_text())
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for path, description in documented_values().items():
        value = _value_at(values, path)
        rows.append(
            f"| `{'.'.join(path)}` | {_cell(_declared_type(schema, path))} | {_cell(_code(value))} "
            f"| {_cell(description)} |"
        )
    return "\n".join(rows)


def _schema_type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(f"`{option}`" for option in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_schema_type(option) for option in schema["anyOf"])
    return str(schema.get("type", "any"))


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    for keyword, symbol in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if keyword in schema:
            parts.append(f"{symbol} {schema[keyword]}")
    return f" ({', '.join(parts)})" if parts else ""


def settings_table() -> str:
    chart_values = yaml.safe_load(VALUES.read_text())[CONFIG_KEY]
    rows = [
        "| Key | Variable | Type | Service default | Description |",
        "|---|---|---|---|---|",
    ]
    for setting in settings():
        schema = setting.schema
        default = _code(schema["default"]) if "default" in schema else "required"
        try:
            chart_value = _value_at(chart_values, setting.path)
        except KeyError:
            chart_value = None
        description = schema.get("description", "")
        if chart_value not in (None, "") and chart_value != schema.get("default"):
            description = f"{description} Chart default: {_code(chart_value)}.".strip()
        if switch := CHART_SWITCHED.get(setting.path):
            description = f"{description} Not a `config` key: set `{switch}`.".strip()
        rows.append(
            f"| `{CONFIG_KEY}.{'.'.join(setting.path)}` | `{variable_name(*setting.path)}` "
            f"| {_cell(_schema_type(schema))}{_bounds(schema)} | {_cell(default)} "
            f"| {_cell(description)} |"
        )
    return "\n".join(rows)


def readme_text() -> str:
    template = README_TEMPLATE.read_text()
    for marker in (VALUES_MARKER, SETTINGS_MARKER):
        if template.count(marker) != 1:
            raise ValueError(f"{README_TEMPLATE.name} must contain {marker} exactly once")
    return template.replace(VALUES_MARKER, values_table()).replace(
        SETTINGS_MARKER, settings_table()
    )


def generated_files() -> dict[Path, str]:
    # The README reads the schema's config part through settings(), not the file, so the order
    # of generation does not matter.
    return {VALUES_SCHEMA: values_schema_text(), README: readme_text()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    arguments = parser.parse_args(argv)
    undocumented = undocumented_values()
    if undocumented:
        print(f"values.yaml keys without a '# --' comment: {', '.join(undocumented)}")
        return 1
    stale = []
    for path, text in generated_files().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not arguments.check:
            path.write_text(text)
    for path in stale:
        verb = "out of date" if arguments.check else "written"
        print(f"{path.relative_to(REPO_ROOT)}: {verb}")
    return 1 if stale and arguments.check else 0


if __name__ == "__main__":
    sys.exit(main())
