"""The dashboard benchmark's pure parts: the pods it makes, the page's stamps turned into figures, medians."""

from __future__ import annotations

from typing import Any

from benchmarks.dashboard import Run, deployment, medians, observer_script, pod_phases, run_of, table, transferred


def resource(start: float, end: float, size: int | None) -> dict[str, Any]:
    return {"name": "http://127.0.0.1:1/x", "startTime": start, "responseEnd": end, "transferSize": size}


def test_the_deployment_runs_the_pause_image_as_many_times_as_asked() -> None:
    made = deployment("dashboard-bench-1", 100)
    assert made["metadata"]["namespace"] == "dashboard-bench-1"
    assert made["spec"]["replicas"] == 100
    assert made["spec"]["selector"]["matchLabels"] == made["spec"]["template"]["metadata"]["labels"]
    assert [c["image"] for c in made["spec"]["template"]["spec"]["containers"]] == ["pause"]


def test_the_observer_counts_only_the_benchmarks_namespace_up_to_the_wanted_number() -> None:
    script = observer_script('ns-"1', 100)
    assert 'const NAMESPACE = "ns-\\"1", PODS = 100;' in script
    assert "text.pod[data-pod^=" in script


def test_pods_are_counted_by_phase_with_deleted_ones_apart() -> None:
    pods: list[dict[str, Any]] = [
        {"metadata": {}, "status": {"phase": "Running"}},
        {"metadata": {}, "status": {"phase": "Running"}},
        {"metadata": {}, "status": {}},
        {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}},
    ]
    assert pod_phases(pods) == {"Running": 2, "Unknown": 1, "Terminating": 1}


def test_the_bytes_are_those_of_resources_fetched_within_the_window() -> None:
    resources = [resource(10, 20, 100), resource(30, 40, 1000), resource(35, 60, 5)]
    assert transferred(resources, since=0, until=25) == 100
    assert transferred(resources, since=25, until=50) == 1000
    assert transferred([resource(1, 2, None)], since=0, until=5) is None


def test_a_run_is_measured_on_the_pages_clock_the_map_from_the_login() -> None:
    timings = {
        "domContentLoaded": 90.04,
        "load": 95.0,
        "transferSize": 2000,
        "resources": [
            resource(50, 60, 30000),
            resource(70, 80, 400),
            resource(1000, 1010, 500),
            resource(1020, 1200, 9000),
        ],
    }
    run = run_of(
        first={"login": 120.0, "submit": 1000.0, "mapDom": 1240.0, "map": 1250.0},
        timings=timings,
        reload={"map": 330.0},
    )
    assert run == Run(
        login_ms=120.0,
        map_ms=250.0,
        reload_ms=330.0,
        dom_content_loaded_ms=90.0,
        load_ms=95.0,
        login_bytes=32400,
        map_bytes=9500,
    )


def test_medians_skip_figures_a_run_did_not_have() -> None:
    runs = [
        Run(100.0, 300.0, 200.0, 50.0, 60.0, 1000, None),
        Run(120.0, 500.0, 220.0, 55.0, 65.0, 1000, None),
        Run(110.0, 400.0, 210.0, 52.0, 62.0, 1200, None),
    ]
    assert medians(runs) == {
        "login_median_ms": 110.0,
        "map_median_ms": 400.0,
        "reload_median_ms": 210.0,
        "dom_content_loaded_median_ms": 52.0,
        "load_median_ms": 62.0,
        "login_median_bytes": 1000.0,
        "map_median_bytes": None,
    }
    lines = table(runs)
    assert len(lines) == 5 and lines[-1].startswith("median") and lines[-1].rstrip().endswith("-")
