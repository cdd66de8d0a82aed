"""Every PromQL expression of the alerting rules and the Grafana dashboard, and the series
selectors in them, for the monitoring tests (static) and the Prometheus end-to-end test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from regen_sync.observability import Metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = REPO_ROOT / "helm" / "regen-sync" / "files"
ALERTS = CHART_FILES / "alerts.yaml"
DASHBOARD = CHART_FILES / "dashboards" / "regen-sync.json"

# Grafana's built-in interval variables, replaced like Grafana does for a short time range.
_GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_]\w*)\s*\)$")


@dataclass(frozen=True)
class Expression:
    origin: str
    promql: str


@dataclass(frozen=True)
class LabelValuesQuery:
    """A dashboard variable's ``label_values(selector, label)``."""

    variable: str
    selector: str
    label: str


def alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(DASHBOARD.read_text())
    return loaded


def substitute(promql: str, variables: dict[str, str]) -> str:
    """Grafana's variables replaced by values (``$name`` and ``${name}``)."""
    for name, value in {**_GRAFANA_INTERVALS, **variables}.items():
        bare = name.removeprefix("$")
        promql = promql.replace(f"${{{bare}}}", value).replace(f"${bare}", value)
    return promql


def dashboard_panels() -> Iterator[dict[str, object]]:
    for panel in dashboard()["panels"]:  # type: ignore[attr-defined]
        yield panel
        yield from panel.get("panels", [])


def expressions(variables: dict[str, str]) -> list[Expression]:
    """The alerts' expressions and the dashboard's queries, Grafana variables substituted."""
    found = [Expression(f"alert {rule['alert']}", str(rule["expr"])) for rule in alert_rules()]
    for panel in dashboard_panels():
        for target in panel.get("targets", []):  # type: ignore[attr-defined]
            found.append(
                Expression(
                    f"panel {panel['title']!r} target {target['refId']}",
                    substitute(target["expr"], variables),
                )
            )
    return found


def label_values_queries(variables: dict[str, str]) -> list[LabelValuesQuery]:
    queries = []
    for variable in dashboard()["templating"]["list"]:  # type: ignore[index]
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.match(variable["query"]["query"])
        assert match, f"variable {variable['name']}: not a label_values() query"
        queries.append(
            LabelValuesQuery(
                variable["name"], substitute(match["selector"], variables), match["label"]
            )
        )
    return queries


_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
    |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<identifier>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<open_brace>\{)
    |(?P<close_brace>\})
    |(?P<open_paren>\()
    |(?P<close_paren>\))
    |(?P<space>\s+)
    |(?P<other>.)
    """,
    re.VERBOSE,
)
# Words followed by a parenthesised list of label names, not by an expression.
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
_AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)


def selectors(promql: str) -> list[str]:
    """The instant/range vector selectors of an expression, e.g. ``up{job="x"}``, in order.

    A small lexer rather than a parser: identifiers followed by ``(`` are functions,
    aggregations are followed by ``(``, ``by`` or ``without``, label lists after ``by``,
    ``on`` … are skipped, and everything inside ``{…}`` belongs to the preceding metric name.
    """
    tokens = [
        (match.lastgroup, match.group())
        for match in _TOKEN.finditer(promql)
        if match.lastgroup != "space"
    ]
    found: list[str] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else (None, "")
        if kind == "identifier" and text in _LABEL_LIST_KEYWORDS and following[0] == "open_paren":
            index = _skip_group(tokens, index + 1, "open_paren", "close_paren")
            continue
        is_call = following[0] == "open_paren"
        is_aggregation = text in _AGGREGATIONS and following[1] in {"by", "without", "("}
        if kind == "identifier" and not (is_call or is_aggregation or text in _KEYWORDS):
            if following[0] == "open_brace":
                end = _skip_group(tokens, index + 1, "open_brace", "close_brace")
                found.append(text + "".join(token for _, token in tokens[index + 1 : end]))
                index = end
                continue
            found.append(text)
        index += 1
    return found


def _skip_group(
    tokens: list[tuple[str | None, str]], start: int, opening: str, closing: str
) -> int:
    """Index just after the group opened at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index][0] == opening:
            depth += 1
        elif tokens[index][0] == closing:
            depth -= 1
            if depth == 0:
                return index + 1
    raise ValueError("unbalanced expression")


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def exported_metric_names() -> set[str]:
    """The series names the service's registry exposes, including families whose labelled
    series appear only once something happened (dead letters, consumer lag)."""
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",))
    }
