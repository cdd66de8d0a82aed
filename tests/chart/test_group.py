"""The replicas as one consumer group: the upstream budgets are the group's and divided by
partitions (the chart refuses budgets it cannot divide, and its notes show each replica's
share), and static group membership names each pod after itself."""

from __future__ import annotations

import math
import re
from typing import Any

import helm_python
import pytest
from rendering import Release, render_file

BUDGETS = {
    # Setting, its label in the notes, the service's default.
    ("zuora", "max_concurrency"): ("Zuora concurrency", 20),
    ("zuora", "requests_per_minute"): ("Zuora requests/minute", 30000),
    ("softwareone", "max_concurrency"): ("SoftwareOne concurrency", 10),
    ("softwareone", "requests_per_minute"): ("SoftwareOne requests/minute", 3000),
    ("zuora", "heavy_max_concurrency"): ("Zuora invoice generation concurrency", 10),
}
INSTANCE_ID = "REGEN_KAFKA__GROUP_INSTANCE_ID"


def _budget(upstream: str, name: str, value: int) -> dict[str, Any]:
    return {"config": {upstream: {name: value}}}


def _autoscaled(partitions: int, low: int, high: int) -> dict[str, Any]:
    return {
        "inputPartitions": partitions,
        "autoscaling": {"mode": "hpa", "minReplicas": low, "maxReplicas": high},
    }


@pytest.mark.parametrize(("upstream", "name"), BUDGETS)
@pytest.mark.parametrize(
    ("replicas", "key"),
    [
        (_autoscaled(12, 2, 8), "autoscaling.maxReplicas (8)"),
        ({"replicaCount": 8}, "replicaCount (8)"),
    ],
    ids=["autoscaled", "fixed"],
)
def test_a_budget_below_the_most_replicas_is_refused_naming_it(
    upstream: str, name: str, replicas: dict[str, Any], key: str
) -> None:
    values = {**replicas, **_budget(upstream, name, 7)}
    message = (
        rf"config\.{upstream}\.{name} \(7\) is below {re.escape(key)}: it is the budget of the "
        r"whole consumer group.*a replica without budget would stall its partitions"
    )
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render_file("minimal", values)
    # One per replica is enough.
    render_file("minimal", {**replicas, **_budget(upstream, name, 8)})


def test_the_services_defaults_count_too() -> None:
    """SoftwareOne's default of 10 concurrent calls cannot serve 11 replicas."""
    with pytest.raises(helm_python.HelmRenderError, match=r"softwareone\.max_concurrency \(10\)"):
        render_file("minimal", _autoscaled(12, 2, 11))
    render_file("minimal", _autoscaled(12, 2, 10))


def _share(budget: int, partitions: int, replicas: int) -> tuple[int, int]:
    """What the smallest and the biggest replica use: the service's share of the partitions,
    spread as evenly as possible (floor(P/R) and ceil(P/R) each)."""
    fewest, most = partitions // replicas, math.ceil(partitions / replicas)
    return max(1, budget * fewest // partitions), max(1, budget * most // partitions)


def _notes_line(release: Release, label: str) -> str:
    [line] = [
        line.strip() for line in release.notes.splitlines() if line.strip().startswith(label + " ")
    ]
    return line


def test_notes_show_each_replicas_share_over_the_autoscaling_range() -> None:
    release = render_file(
        "minimal", {**_autoscaled(6, 1, 3), **_budget("zuora", "max_concurrency", 12)}
    )
    assert "each replica uses its share of the 6 input partitions" in release.notes
    assert _notes_line(release, "Zuora concurrency") == (
        "Zuora concurrency budget 12 for the group: 1 replica uses 12, 3 replicas use 4 each"
    )
    # The service's defaults where the values set none.
    assert _notes_line(release, "SoftwareOne requests/minute") == (
        "SoftwareOne requests/minute budget 3000 for the group: "
        "1 replica uses 3000, 3 replicas use 1000 each"
    )
    # 1, 2 and 3 all divide 6.
    assert "unevenly" not in release.notes


def test_notes_name_the_replica_counts_that_split_the_partitions_unevenly() -> None:
    fixed = render_file(
        "minimal",
        {"inputPartitions": 6, "replicaCount": 4, **_budget("zuora", "max_concurrency", 12)},
    )
    # Partitions 2, 2, 1, 1: shares 4, 4, 2, 2.
    assert _notes_line(fixed, "Zuora concurrency") == (
        "Zuora concurrency budget 12 for the group: 4 replicas use 2 to 4 each"
    )
    assert "With 4 replicas the 6 partitions spread unevenly" in fixed.notes
    autoscaled = render_file("production")
    assert "With 4 or 5 replicas the 6 partitions spread unevenly" in autoscaled.notes


def test_notes_assume_an_even_spread_when_the_partitions_are_unknown() -> None:
    release = render_file("minimal", {"replicaCount": 3})
    assert "inputPartitions is not set: even shares assumed" in release.notes
    assert _notes_line(release, "Zuora concurrency") == (
        "Zuora concurrency budget 20 for the group: 3 replicas use 6 each"
    )


@pytest.mark.parametrize(
    ("partitions", "low", "high"), [(6, 1, 3), (6, 2, 5), (12, 5, 12), (7, 3, 3), (10, 1, 4)]
)
def test_notes_shares_follow_the_services_formula(partitions: int, low: int, high: int) -> None:
    config = {
        "zuora": {"max_concurrency": 13, "requests_per_minute": 1000, "heavy_max_concurrency": 12},
        "softwareone": {"max_concurrency": 12},
    }
    release = render_file("minimal", {**_autoscaled(partitions, low, high), "config": config})
    for (upstream, name), (label, default) in BUDGETS.items():
        budget = config[upstream].get(name, default)
        parts = []
        for replicas in dict.fromkeys((low, high)):
            smallest, biggest = _share(budget, partitions, replicas)
            uses = f"{smallest}" if smallest == biggest else f"{smallest} to {biggest}"
            parts.append(
                f"1 replica uses {uses}"
                if replicas == 1
                else f"{replicas} replicas use {uses} each"
            )
        assert _notes_line(release, label) == (
            f"{label} budget {budget} for the group: {', '.join(parts)}"
        )


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def test_static_membership_names_each_member_after_its_pod() -> None:
    release = render_file("minimal", {"staticMembership": {"enabled": True}})
    assert _env(release.container)[INSTANCE_ID] == {
        "name": INSTANCE_ID,
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    # Never one value for all pods, and not for the `helm test` pod, which joins no group.
    assert INSTANCE_ID not in release.settings_env
    [check] = release.one("Pod")["spec"]["containers"]
    assert INSTANCE_ID not in _env(check)
    assert "Static group membership" in release.notes


@pytest.mark.parametrize("values_file", ["minimal", "hpa", "production"])
def test_static_membership_is_off_unless_enabled(values_file: str) -> None:
    release = render_file(values_file)
    assert INSTANCE_ID not in _env(release.container)
    assert INSTANCE_ID not in release.settings_env
    assert "Static group membership" not in release.notes


def test_extra_env_comes_along_with_static_membership() -> None:
    extra = {"name": "OTEL_SERVICE_NAME", "value": "regen-sync"}
    release = render_file("minimal", {"staticMembership": {"enabled": True}, "extraEnv": [extra]})
    assert list(_env(release.container)) == [INSTANCE_ID, "OTEL_SERVICE_NAME"]


def test_a_group_instance_id_for_the_whole_release_is_refused_naming_the_switch() -> None:
    with pytest.raises(
        helm_python.HelmRenderError,
        match=r"config\.kafka\.group_instance_id must differ per pod.*staticMembership\.enabled",
    ):
        render_file("minimal", {"config": {"kafka": {"group_instance_id": "regen-sync-0"}}})
