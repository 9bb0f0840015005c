"""The kubelet's reading of usage and what it serves of it: cgroup v1 and v2 files, /proc, the CPU rate
between readings, /metrics/resource as Prometheus text, /stats/summary, and who may read them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from agents.kubelet import stats
from agents.kubelet.resourcemetrics import ResourceMetrics
from agents.kubelet.resourcestats import (
    ContainerRun,
    PodRuns,
    Sampler,
    Snapshot,
    Track,
    advance,
    nano_cores,
    summary,
)
from agents.kubelet.server import KubeletServer
from agents.kubelet.serverauth import (
    ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    Attributes,
    ServerAuth,
    attributes,
    bearer_token,
)
from agents.kubelet.stats import Usage
from agents.machinery.client import ApiUnavailableError

CID = "k8s.io/0f3c-uid_main_0"
CGROUP = f"/{CID}"

V2_CPU_STAT = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n"
V2_MEMORY_STAT = "anon 3000000\nfile 8000000\nactive_file 1000000\ninactive_file 6000000\nslab 100\n"
V1_MEMORY_STAT = (
    "cache 8000000\nrss 3000000\ninactive_file 6000000\n"
    "total_cache 8000000\ntotal_rss 3000000\ntotal_inactive_file 6000000\ntotal_active_file 1000000\n"
)
PROC_STAT = (
    "cpu  1000 50 300 90000 200 10 20 5 40 0\n"
    "cpu0 500 25 150 45000 100 5 10 3 20 0\n"
    "cpu1 500 25 150 45000 100 5 10 2 20 0\n"
    "intr 12345 0 0\nctxt 999\nbtime 1700000000\nprocesses 42\n"
)
MEMINFO = (
    "MemTotal:        4000000 kB\nMemFree:         1000000 kB\nMemAvailable:    2500000 kB\n"
    "Buffers:          100000 kB\nAnonPages:        700000 kB\nHugePages_Total:       0\n"
)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def clock(at: float) -> Callable[[], float]:
    return lambda: at


# --- reading ------------------------------------------------------------------------------------


def test_a_v2_cgroup_reads_cpu_from_usage_usec_and_the_working_set_without_inactive_files(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            f"{CID}/cpu.stat": V2_CPU_STAT,
            f"{CID}/memory.current": "20000000\n",
            f"{CID}/memory.stat": V2_MEMORY_STAT,
            f"{CID}/memory.max": "max\n",
        },
    )
    usage = stats.read_cgroup(CGROUP, root=root, clock=clock(100.0))
    assert usage == Usage(
        at=100.0, cpu_seconds=2.5, memory_bytes=20_000_000, working_set_bytes=14_000_000, rss_bytes=3_000_000
    )
    assert usage.available_bytes is None
    (root / CID / "memory.max").write_text("16000000\n")
    limited = stats.read_cgroup(CGROUP, root=root, clock=clock(100.0))
    assert limited is not None and limited.limit_bytes == 16_000_000 and limited.available_bytes == 2_000_000


def test_a_v1_cgroup_reads_cpuacct_nanoseconds_and_the_memory_controllers_files(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            f"cpuacct/{CID}/cpuacct.usage": "1750000000\n",
            f"memory/{CID}/memory.usage_in_bytes": "20000000\n",
            f"memory/{CID}/memory.stat": V1_MEMORY_STAT,
            f"memory/{CID}/memory.limit_in_bytes": "9223372036854771712\n",
        },
    )
    usage = stats.read_cgroup(CGROUP, root=root, clock=clock(5.0))
    assert usage == Usage(
        at=5.0, cpu_seconds=1.75, memory_bytes=20_000_000, working_set_bytes=14_000_000, rss_bytes=3_000_000
    )
    (root / "memory" / CID / "memory.limit_in_bytes").write_text("33554432\n")
    limited = stats.read_cgroup(CGROUP, root=root)
    assert limited is not None and limited.limit_bytes == 33_554_432


def test_the_working_set_never_goes_below_zero() -> None:
    usage = stats.cgroup_v2_usage(
        cpu_stat="usage_usec 1\n", memory_current="100\n", memory_stat="inactive_file 500\n", at=0.0
    )
    assert usage.working_set_bytes == 0


def test_a_container_gone_reads_as_nothing(tmp_path: Path) -> None:
    assert stats.read_cgroup("/k8s.io/gone", root=tmp_path) is None
    write(tmp_path, {"memory/k8s.io/half/memory.usage_in_bytes": "1\n"})  # cpuacct already removed
    assert stats.read_cgroup("/k8s.io/half", root=tmp_path) is None


def test_the_nodes_cpu_is_busy_jiffies_over_user_hz_and_its_working_set_total_minus_available(
    tmp_path: Path,
) -> None:
    # busy: user 1000 + nice 50 + system 300 + irq 10 + softirq 20 + steal 5 (guest is inside user)
    assert stats.proc_stat_cpu_seconds(PROC_STAT, user_hz=100) == pytest.approx(13.85)
    assert stats.proc_stat_boot_time(PROC_STAT) == 1_700_000_000
    assert stats.meminfo(MEMINFO)["MemTotal"] == 4_000_000 * 1024
    assert stats.meminfo(MEMINFO)["HugePages_Total"] == 0
    root = write(tmp_path, {"stat": PROC_STAT, "meminfo": MEMINFO})
    node = stats.read_node(proc=root, clock=clock(7.0))
    assert node.working_set_bytes == 1_500_000 * 1024
    assert node.memory_bytes == 3_000_000 * 1024
    assert node.available_bytes == 2_500_000 * 1024
    assert node.at == 7.0
    with pytest.raises(ValueError, match="no cpu line"):
        stats.proc_stat_cpu_seconds("intr 1\n")


# --- rates ----------------------------------------------------------------------------------------


def reading(at: float, cpu: float, memory: int = 1000) -> Usage:
    return Usage(at=at, cpu_seconds=cpu, memory_bytes=memory, working_set_bytes=memory)


def test_a_rate_needs_two_readings_a_window_apart() -> None:
    first = advance(None, reading(100.0, 10.0))
    assert nano_cores(first) is None
    second = advance(first, reading(110.0, 15.0))
    assert second == Track(reading(110.0, 15.0), reading(100.0, 10.0))
    assert nano_cores(second) == 500_000_000  # half a core
    # a reading sooner than the window moves the latest only: the rate is over 100..110.5
    third = advance(second, reading(110.5, 15.5))
    assert third.earlier == reading(100.0, 10.0)
    assert nano_cores(third) == round(5.5 / 10.5 * 1e9)


def test_readings_close_together_still_make_a_rate_once_a_window_has_passed() -> None:
    track = advance(None, reading(100.0, 10.0))
    for step in range(1, 5):  # a scrape every 0.4 s
        track = advance(track, reading(100.0 + 0.4 * step, 10.0 + 0.2 * step))
    assert track.earlier == reading(100.0, 10.0) and track.latest.at == pytest.approx(101.6)
    assert nano_cores(track) == 500_000_000


def test_a_counter_that_went_back_has_no_rate() -> None:
    track = advance(advance(None, reading(0.0, 50.0)), reading(10.0, 1.0))
    assert nano_cores(track) is None


class FakeNode:
    def __init__(self) -> None:
        self.readings: dict[str, Usage] = {}
        self.node = reading(0.0, 0.0)

    def cgroup(self, path: str) -> Usage | None:
        return self.readings.get(path)

    def read_node(self) -> Usage:
        return self.node


def web_pod(*containers: str) -> PodRuns:
    runs = tuple(ContainerRun(name, f"/k8s.io/uid1_{name}_0", 1_700_000_100.0) for name in containers)
    return PodRuns("default", "web", "uid1", 1_700_000_050.0, runs)


def sampler(fake: FakeNode, pods: list[PodRuns]) -> Sampler:
    return Sampler(
        node_name="n1", pods=lambda: pods, read_cgroup=fake.cgroup, read_node=fake.read_node, boot_time=lambda: 1e9
    )


def test_the_summary_gives_the_rate_from_the_second_reading_and_sums_a_pods_containers() -> None:
    fake = FakeNode()
    fake.node = reading(1000.0, 100.0, memory=5000)
    fake.readings = {
        "/k8s.io/uid1_app_0": reading(1000.0, 2.0, memory=300),
        "/k8s.io/uid1_sidecar_0": reading(1000.0, 1.0, memory=200),
    }
    watcher = sampler(fake, [web_pod("app", "sidecar", "gone")])
    first = summary(watcher.snapshot())
    assert "usageNanoCores" not in first["node"]["cpu"]
    assert first["node"]["nodeName"] == "n1" and first["node"]["startTime"] == "2001-09-09T01:46:40Z"
    [pod] = first["pods"]
    assert pod["podRef"] == {"name": "web", "namespace": "default", "uid": "uid1"}
    assert [c["name"] for c in pod["containers"]] == ["app", "sidecar"]  # "gone" has no cgroup: left out
    assert pod["cpu"]["usageCoreNanoSeconds"] == 3_000_000_000 and "usageNanoCores" not in pod["cpu"]
    assert pod["memory"]["workingSetBytes"] == 500

    fake.node = reading(1010.0, 110.0, memory=5000)
    fake.readings = {
        "/k8s.io/uid1_app_0": reading(1010.0, 7.0, memory=400),
        "/k8s.io/uid1_sidecar_0": reading(1010.0, 2.0, memory=200),
    }
    second = summary(watcher.snapshot())
    assert second["node"]["cpu"]["usageNanoCores"] == 1_000_000_000
    assert second["node"]["memory"]["workingSetBytes"] == 5000
    [pod] = second["pods"]
    app, sidecar = pod["containers"]
    assert app["cpu"]["usageNanoCores"] == 500_000_000 and sidecar["cpu"]["usageNanoCores"] == 100_000_000
    assert pod["cpu"]["usageNanoCores"] == 600_000_000
    assert pod["cpu"]["time"] == "1970-01-01T00:16:50Z" and app["startTime"] == "2023-11-14T22:15:00Z"


def test_a_pod_whose_containers_all_are_gone_is_left_out_and_an_unreadable_node_is_a_scrape_error() -> None:
    fake = FakeNode()

    def broken() -> Usage:
        raise OSError("no /proc")

    watcher = Sampler(node_name="n1", pods=lambda: [web_pod("app")], read_cgroup=fake.cgroup, read_node=broken)
    snapshot = watcher.snapshot()
    assert snapshot.pods == () and snapshot.error
    assert "cpu" not in summary(snapshot)["node"]


# --- /metrics/resource ----------------------------------------------------------------------------


def two_readings() -> Snapshot:
    fake = FakeNode()
    fake.node = reading(1000.0, 100.0, memory=5000)
    fake.readings = {"/k8s.io/uid1_app_0": reading(1000.25, 2.5, memory=300)}
    return sampler(fake, [web_pod("app")]).snapshot()


def test_the_resource_metrics_are_kubes_names_labels_and_timestamps() -> None:
    text = ResourceMetrics(two_readings).render().decode()
    found = {family.name: family for family in text_string_to_metric_families(text)}
    samples = {s.name: s for family in found.values() for s in family.samples}
    assert set(samples) == {
        "node_cpu_usage_seconds_total",
        "node_memory_working_set_bytes",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_start_time_seconds",
        "pod_cpu_usage_seconds_total",
        "pod_memory_working_set_bytes",
        "scrape_error",
    }
    assert found["node_cpu_usage_seconds"].type == "counter"
    assert found["container_memory_working_set_bytes"].type == "gauge"
    container = samples["container_cpu_usage_seconds_total"]
    assert container.labels == {"container": "app", "pod": "web", "namespace": "default"}
    assert container.value == 2.5 and container.timestamp is not None and float(container.timestamp) == 1000.25
    assert samples["pod_memory_working_set_bytes"].labels == {"pod": "web", "namespace": "default"}
    assert samples["pod_memory_working_set_bytes"].value == 300
    assert samples["node_memory_working_set_bytes"].value == 5000
    assert samples["container_start_time_seconds"].value == 1_700_000_100.0
    assert samples["scrape_error"].value == 0
    assert "node_cpu_usage_seconds_total 100.0 1000000\n" in text  # milliseconds, as kube's kubelet writes


# --- who may read them -------------------------------------------------------------------------------


def test_a_request_maps_to_the_nodes_subresource_by_path_and_its_verb_by_method() -> None:
    assert attributes("GET", "/metrics/resource", node="n1") == Attributes("get", "metrics", "n1")
    assert attributes("GET", "/metrics", node="n1").subresource == "metrics"
    assert attributes("GET", "/metricsfoo", node="n1").subresource == "proxy"
    assert attributes("GET", "/stats/summary", node="n1").subresource == "stats"
    assert attributes("GET", "/logs/syslog", node="n1").subresource == "log"
    assert attributes("GET", "/containerLogs/ns/p/c", node="n1").subresource == "proxy"
    assert attributes("POST", "/exec/ns/p/c", node="n1") == Attributes("create", "proxy", "n1")
    assert attributes("DELETE", "/pods", node="n1").verb == "delete"
    assert bearer_token("Bearer abc ") == "abc" and bearer_token("Basic abc") == "" and bearer_token("") == ""


class FakeApi:
    """The API server's answers to reviews: tokens it knows, and who may get nodes/metrics."""

    def __init__(self) -> None:
        self.users = {"good": "alice", "other": "bob"}
        self.allowed = {("alice", "metrics")}
        self.calls: list[str] = []
        self.down = False

    async def request(self, method: str, path: str, *, body: Any = None) -> Any:
        self.calls.append(path)
        if self.down:
            raise ApiUnavailableError(f"{method} {path}: connection refused")
        if path == TOKEN_REVIEWS:
            name = self.users.get(body["spec"]["token"])
            user = {"username": name, "groups": ["system:authenticated"]} if name else {}
            return {**body, "status": {"authenticated": name is not None, "user": user}}
        assert path == ACCESS_REVIEWS
        spec = body["spec"]
        assert spec["resourceAttributes"]["resource"] == "nodes" and spec["resourceAttributes"]["name"] == "n1"
        allowed = (spec["user"], spec["resourceAttributes"]["subresource"]) in self.allowed
        return {**body, "status": {"allowed": allowed}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_tokens_are_reviewed_access_is_reviewed_and_both_answers_are_kept_a_while() -> None:
    api, now = FakeApi(), Clock()
    auth = ServerAuth(tokens=["apiserver"], node="n1", client=api, clock=now)
    assert (await auth.decide(method="GET", path="/stats/summary", authorization="Bearer apiserver")).status == 200
    assert api.calls == []  # the API server's own token needs no review
    assert (await auth.decide(method="GET", path="/metrics/resource", authorization="")).status == 401
    ok = await auth.decide(method="GET", path="/metrics/resource", authorization="Bearer good")
    assert (ok.status, ok.user) == (200, "alice")
    refused = await auth.decide(method="GET", path="/stats/summary", authorization="Bearer good")
    assert refused.status == 403
    assert refused.message == "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)"
    garbage = await auth.decide(method="GET", path="/metrics/resource", authorization="Bearer garbage")
    assert (garbage.status, garbage.message) == (401, "Unauthorized")
    calls = len(api.calls)
    await auth.decide(method="GET", path="/metrics/resource", authorization="Bearer good")
    await auth.decide(method="GET", path="/metrics/cadvisor", authorization="Bearer good")  # same attributes
    await auth.decide(method="GET", path="/stats/summary", authorization="Bearer good")
    await auth.decide(method="GET", path="/metrics/resource", authorization="Bearer garbage")
    assert len(api.calls) == calls  # all answered from the caches
    api.allowed.add(("alice", "stats"))
    now.now = 31.0  # a refusal is kept 30 s, a bad token too
    assert (await auth.decide(method="GET", path="/stats/summary", authorization="Bearer good")).status == 200
    api.users["garbage"] = "carol"
    api.allowed.add(("carol", "metrics"))
    assert (await auth.decide(method="GET", path="/metrics", authorization="Bearer garbage")).status == 200


async def test_reviews_that_cannot_be_had_refuse_the_request() -> None:
    api = FakeApi()
    api.down = True
    auth = ServerAuth(tokens=[], node="n1", client=api)
    assert (await auth.decide(method="GET", path="/metrics/resource", authorization="Bearer good")).status == 401
    api.down = False
    assert (await auth.decide(method="GET", path="/metrics/resource", authorization="Bearer good")).status == 200
    api.down = True
    failed = await auth.decide(method="GET", path="/stats/summary", authorization="Bearer good")
    assert failed.status == 500
    assert failed.message == "Authorization error (user=alice, verb=get, resource=nodes, subresource=stats)"
    static = ServerAuth(tokens=["t"], node="n1")  # no client: only the listed tokens
    assert (await static.decide(method="GET", path="/metrics", authorization="Bearer other")).status == 401


# --- the port ---------------------------------------------------------------------------------------


@pytest.fixture
async def port() -> AsyncIterator[TestClient[Any, Any]]:
    server = KubeletServer(
        runs_of=lambda *_: None,
        log_file=lambda uid, name, attempt: Path("/nonexistent"),
        auth=ServerAuth(tokens=["apiserver"], node="n1", client=FakeApi()),
        snapshot=two_readings,
    )
    client = TestClient(TestServer(server.app))
    await client.start_server()
    yield client
    await client.close()


async def test_the_port_serves_metrics_and_the_summary_to_whom_may_read_them(port: TestClient[Any, Any]) -> None:
    metrics = await port.get("/metrics/resource", headers={"Authorization": "Bearer good"})
    assert metrics.status == 200
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "pod_cpu_usage_seconds_total{" in await metrics.text()
    summarized = await port.get("/stats/summary", headers={"Authorization": "Bearer apiserver"})
    assert summarized.status == 200
    assert (await summarized.json())["pods"][0]["podRef"]["name"] == "web"
    refused = await port.get("/stats/summary", headers={"Authorization": "Bearer good"})
    assert refused.status == 403
    assert await refused.text() == "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)"
    assert (await port.get("/metrics/resource")).status == 401
    assert (await port.get("/healthz")).status == 200
