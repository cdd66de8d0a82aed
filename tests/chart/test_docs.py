"""The chart's generated files are up to date and its documentation covers what it ships."""

from __future__ import annotations

import json
import re
import tomllib

import yaml
from rendering import CHART_DIR, REPO_ROOT, generator

KUBERNETES_DOC = REPO_ROOT / "docs" / "kubernetes.md"


def test_values_schema_and_readme_are_generated_from_the_current_sources() -> None:
    """Fails after a change to service/regen_sync/config.py, values.yaml or README.tmpl.md until
    `.venv/bin/python helm/generate.py` is run."""
    stale = [
        str(path.relative_to(REPO_ROOT))
        for path, text in generator().generated_files().items()
        if path.read_text() != text
    ]
    assert stale == [], "run: .venv/bin/python helm/generate.py"


def test_every_value_is_documented() -> None:
    assert generator().undocumented_values() == []


def test_the_readme_lists_every_value_and_setting() -> None:
    readme = (CHART_DIR / "README.md").read_text()
    for path in generator().documented_values():
        assert f"| `{'.'.join(path)}` |" in readme
    for setting in generator().settings():
        assert f"`{generator().variable_name(*setting.path)}`" in readme


def test_chart_deploys_the_version_of_the_package() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def _sections(markdown: str) -> list[str]:
    return re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)


def test_the_runbook_has_a_section_per_alert() -> None:
    groups = yaml.safe_load((CHART_DIR / "files" / "alerts.yaml").read_text())["groups"]
    alerts = [rule["alert"] for group in groups for rule in group["rules"]]
    headings = _sections(KUBERNETES_DOC.read_text())
    assert [alert for alert in alerts if alert not in headings] == []


def test_the_guide_describes_every_dashboard_panel() -> None:
    dashboard = json.loads((CHART_DIR / "files" / "dashboards" / "regen-sync.json").read_text())
    guide = KUBERNETES_DOC.read_text()
    titles = [panel["title"] for panel in dashboard["panels"] if panel["type"] != "row"]
    assert [title for title in titles if f"**{title}**" not in guide] == []


def test_the_guide_installs_the_shipped_production_example() -> None:
    guide = KUBERNETES_DOC.read_text()
    assert "helm/regen-sync/examples/production.yaml" in guide
    assert (CHART_DIR / "examples" / "production.yaml").is_file()
