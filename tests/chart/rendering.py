"""Renders the regen-sync chart with Helm's own Go SDK (helm-python-sdk, no helm binary) and
hands the tests the Kubernetes objects it produced."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "regen-sync"
RELEASE = "regen-sync"
NAMESPACE = "billing"

# Values files every render test runs with: the least a release needs, every option on (KEDA),
# the HPA alternative, and the documented production example.
VALUES_FILES = {
    "minimal": CHART_DIR / "ci" / "minimal-values.yaml",
    "all-options": CHART_DIR / "ci" / "all-options-values.yaml",
    "hpa": CHART_DIR / "ci" / "hpa-values.yaml",
    "production": CHART_DIR / "examples" / "production.yaml",
}


def load_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(VALUES_FILES[name].read_text())
    return values


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` layered over ``base`` the way Helm layers values files."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@functools.cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


@dataclass(frozen=True)
class Release:
    manifests: dict[str, str]

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [
            document
            for path, text in sorted(self.manifests.items())
            if not path.endswith("NOTES.txt")
            for document in yaml.safe_load_all(text)
            if document
        ]

    @property
    def notes(self) -> str:
        return next(text for path, text in self.manifests.items() if path.endswith("NOTES.txt"))

    def kinds(self) -> list[str]:
        return sorted(obj["kind"] for obj in self.objects)

    def all_of(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        [found] = [
            obj for obj in self.all_of(kind) if obj["metadata"]["name"].endswith(name_suffix)
        ]
        return found

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        [container] = self.pod_spec["containers"]
        return dict(container)

    @property
    def settings_env(self) -> dict[str, str]:
        """The environment the container gets from the chart's settings ConfigMap."""
        name = self.container["envFrom"][0]["configMapRef"]["name"]
        [config_map] = [c for c in self.all_of("ConfigMap") if c["metadata"]["name"] == name]
        data: dict[str, str] = config_map["data"]
        return data


def render(values: dict[str, Any]) -> Release:
    """Render like ``helm template``: raises helm_python.HelmValuesError on a values-schema
    violation and HelmRenderError on a template ``fail``."""
    # The cache key must not be the mutable dict itself.
    return _render(json.dumps(values, sort_keys=True))


@functools.cache
def _render(values_json: str) -> Release:
    return Release(_chart().render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE))


def render_file(name: str, override: dict[str, Any] | None = None) -> Release:
    return render(merged(load_values(name), override or {}))


def lint(values: dict[str, Any]) -> dict[str, Any]:
    return helm_python.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)


def chart_default_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return values


@functools.cache
def generator() -> ModuleType:
    """helm/generate.py, which derives the values schema and README from the service."""
    spec = importlib.util.spec_from_file_location(
        "helm_generate", REPO_ROOT / "helm" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses resolve their annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
