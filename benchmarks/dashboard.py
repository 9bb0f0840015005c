"""The dashboard's page load with many pods (issue 20), in a real browser.

``--pods`` (100) pods of the ``pause`` image (a Deployment in a namespace of the benchmark's own) run
on the lab's node; the dashboard process runs on this host against the lab's API server, as its
integration test runs it; Debian's headless ``chromium``, driven by selenium through Debian's
chromedriver, then opens it ``--runs`` (5) times, each time in a fresh browser (an empty cache and no
cookie: a first visit). Per run, on the page's own clock (``performance.now()``, zero at the
navigation's start):

- ``login``: navigation start -> the login form shown (the page loaded, ``api/whoami`` answered 401);
- ``map``: the login form submitted -> the architecture map showing every one of the pods (the
  login, ``api/overview`` with every pod, the SVG drawn) and the frame after it painted;
- ``reload``: the page reloaded while logged in, navigation start -> the map showing every pod again
  (a returning user: cookie set, static files in the cache);
- the first load's navigation timing (``domContentLoaded``, ``load``, the end of each event) and the
  bytes transferred (the Resource Timing API's ``transferSize``: headers and bodies) for the login
  page and for what the map fetched after the login.

The moments are stamped in the page by a ``MutationObserver`` put there before the page's own script
(DevTools' ``Page.addScriptToEvaluateOnNewDocument``), so the figures do not depend on how often the
benchmark polls; polling only bounds the wait. Medians follow the per-run rows, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import busy_fraction, emit, local_lab, settle
from kubelab_testing.browser import DashboardError, headless_chromium, running_dashboard
from kubelab_testing.commands import CommandFailed
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.waiting import NotInTime, eventually
from provisioner.errors import HostError
from provisioner.lab import kubeconfig as kubeconfigs
from provisioner.system import packages

IMAGE = "pause"  # the lab's built-in image (catatonit): runs on the node at next to no cost
PAGE_WAIT = 30.0  # seconds a navigation, or the login form after it, may take
MAP_WAIT = 60.0  # seconds the map may take to show every pod

# Runs in every document before the page's own script: stamps when the login form shows, when the
# form is submitted, and when the map holds every pod of the benchmark's namespace (``mapDom``) and
# the frame after that has been painted (``map``: a task queued from the next animation frame runs
# after that frame's paint). ``seen`` is the last count, for the message of a wait that ran out.
OBSERVER = """
(() => {
  const NAMESPACE = %(namespace)s, PODS = %(pods)d;
  const marks = { seen: 0 };
  Object.defineProperty(window, "__dashboardBenchmark", { value: marks });
  document.addEventListener("submit", () => {
    if (marks.submit === undefined) marks.submit = performance.now();
  }, true);
  const observer = new MutationObserver(() => {
    const now = performance.now();
    const login = document.getElementById("login");
    if (marks.login === undefined && login && !login.hidden) marks.login = now;
    const selector = `svg#architecture g.node text.pod[data-pod^="${NAMESPACE}/"]`;
    marks.seen = document.querySelectorAll(selector).length;
    if (marks.mapDom === undefined && marks.seen >= PODS) {
      marks.mapDom = now;
      observer.disconnect();
      requestAnimationFrame(() => setTimeout(() => { marks.map = performance.now(); }, 0));
    }
  });
  observer.observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["hidden"] });
})();
"""

# The document's navigation entry and every resource entry, as plain values.
TIMINGS = """
const nav = performance.getEntriesByType("navigation")[0] || {};
return {
  domContentLoaded: nav.domContentLoadedEventEnd ?? null,
  load: nav.loadEventEnd ?? null,
  transferSize: nav.transferSize ?? null,
  resources: performance.getEntriesByType("resource").map((r) => ({
    name: r.name, startTime: r.startTime, responseEnd: r.responseEnd, transferSize: r.transferSize ?? null,
  })),
};
"""


class BenchmarkError(Exception):
    """Something the measurement needs did not happen in time: said in one line."""


# --- the pure parts -------------------------------------------------------------------------------


def deployment(namespace: str, replicas: int) -> dict[str, Any]:
    """The pods the map is to show: ``replicas`` pods of the pause image, stopped at once when deleted."""
    labels = {"app": "dashboard-benchmark"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pause", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "pause", "image": IMAGE}],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def observer_script(namespace: str, pods: int) -> str:
    """The stamping script for a map that is to show ``pods`` pods of ``namespace``."""
    return OBSERVER % {"namespace": json.dumps(namespace), "pods": pods}


def pod_phases(pods: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many of ``pods`` are in each phase (``Terminating`` for those being deleted)."""
    counts: dict[str, int] = {}
    for pod in pods:
        phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else pod.get("status", {}).get("phase", "")
        counts[phase or "Unknown"] = counts.get(phase or "Unknown", 0) + 1
    return counts


def transferred(resources: Sequence[dict[str, Any]], *, since: float, until: float) -> int | None:
    """Bytes of the resources fetched from ``since`` to ``until`` (ms on the page's clock); None when
    the browser gave no sizes."""
    sizes = [r.get("transferSize") for r in resources if r["startTime"] >= since and r["responseEnd"] <= until]
    if any(size is None for size in sizes):
        return None
    return sum(int(size) for size in sizes if size is not None)


@dataclass(frozen=True)
class Run:
    """One visit's figures: milliseconds, and bytes (None where the browser did not say)."""

    login_ms: float
    map_ms: float
    reload_ms: float
    dom_content_loaded_ms: float
    load_ms: float
    login_bytes: int | None
    map_bytes: int | None


def run_of(*, first: dict[str, Any], timings: dict[str, Any], reload: dict[str, Any]) -> Run:
    """A visit's figures from the stamps of its first document (``first``: login, submit, map), that
    document's timings (read once the map showed) and the reloaded document's stamps."""
    resources = timings["resources"]
    document = timings.get("transferSize")
    page = transferred(resources, since=0.0, until=first["login"])
    return Run(
        login_ms=round(first["login"], 1),
        map_ms=round(first["map"] - first["submit"], 1),
        reload_ms=round(reload["map"], 1),
        dom_content_loaded_ms=round(timings["domContentLoaded"], 1),
        load_ms=round(timings["load"], 1),
        login_bytes=None if document is None or page is None else int(document) + page,
        map_bytes=transferred(resources, since=first["submit"], until=first["map"]),
    )


HEADINGS = ("login ms", "map ms", "reload ms", "DCL ms", "load ms", "login bytes", "map bytes")
FIGURES = ("login_ms", "map_ms", "reload_ms", "dom_content_loaded_ms", "load_ms", "login_bytes", "map_bytes")


def medians(runs: Sequence[Run]) -> dict[str, float | None]:
    """The median of each figure over ``runs`` (``login_median_ms``, ...; None where no run had it)."""
    found: dict[str, float | None] = {}
    for name in FIGURES:
        values = [v for run in runs if (v := asdict(run)[name]) is not None]
        stem, unit = name.rsplit("_", 1)
        found[f"{stem}_median_{unit}"] = round(statistics.median(values), 1) if values else None
    return found


def table(runs: Sequence[Run]) -> list[str]:
    """The per-run rows and the medians' row, under a header."""

    def cells(values: Sequence[object]) -> str:
        return "".join(f"{'-' if v is None else v:>14}" for v in values)

    lines = [f"{'RUN':<8}" + "".join(f"{heading:>14}" for heading in HEADINGS)]
    lines += [f"{number:<8}" + cells([asdict(run)[n] for n in FIGURES]) for number, run in enumerate(runs, 1)]
    lines.append(f"{'median':<8}" + cells(list(medians(runs).values())))
    return lines


# --- the executor ---------------------------------------------------------------------------------


def running_pods(kubectl: Kubectl, namespace: str, pods: int) -> None:
    """Create the namespace and the Deployment; wait until all ``pods`` are Running."""
    kubectl.ok("create", "namespace", namespace)
    kubectl.ok("apply", "-f", "-", stdin=json.dumps(deployment(namespace, pods)))
    deadline = 60.0 + 2.0 * pods

    def all_running() -> dict[str, int] | None:
        phases = pod_phases(kubectl.json("get", "pods", "-n", namespace)["items"])
        return phases if phases == {"Running": pods} else None

    try:
        eventually(all_running, timeout=deadline, interval=2.0, what=f"{pods} pods Running")
    except NotInTime:
        phases = pod_phases(kubectl.json("get", "pods", "-n", namespace)["items"])
        raise BenchmarkError(
            f"not all {pods} pods Running within {deadline:.0f} s: {phases} (the node takes at most its"
            " --max-pods, 110 by default, system pods included)"
        ) from None


@contextmanager
def dashboard(kubeconfig: Path, logs: Path) -> Iterator[str]:
    """The dashboard on the host against ``kubeconfig``'s API server, its log in ``logs``; its URL."""
    try:
        with running_dashboard(kubeconfig, log=logs) as url:
            yield url
    except DashboardError as exc:
        raise BenchmarkError(str(exc)) from None


@contextmanager
def browser(script: str) -> Iterator[Any]:
    """A fresh headless chromium (an empty profile) that runs ``script`` in every document first."""
    with headless_chromium() as driver:
        driver.set_page_load_timeout(PAGE_WAIT)
        driver.set_script_timeout(PAGE_WAIT)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
        yield driver


def stamps(driver: Any, wanted: str, *, timeout: float) -> dict[str, Any]:
    """The page's stamps once ``wanted`` is among them (at most ``timeout`` seconds)."""

    def read() -> dict[str, Any] | None:
        found: dict[str, Any] | None = driver.execute_script("return window.__dashboardBenchmark || null;")
        return found if found and wanted in found else None

    try:
        result: dict[str, Any] = eventually(read, timeout=timeout, what=wanted)
    except NotInTime:
        seen = driver.execute_script("return window.__dashboardBenchmark || null;")
        raise BenchmarkError(f"the page did not reach '{wanted}' within {timeout:.0f} s (stamps: {seen})") from None
    return result


def one_run(url: str, token: str, script: str) -> tuple[Run, str]:
    """A first visit in a fresh browser: the login page, the login, the map; then a reload. Also the
    browser's version."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    with browser(script) as driver:
        driver.get(url)
        stamps(driver, "login", timeout=PAGE_WAIT)
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "login-button").click()
        first = stamps(driver, "map", timeout=MAP_WAIT)
        eventually(lambda: driver.execute_script("return document.readyState") == "complete", timeout=PAGE_WAIT)
        timings: dict[str, Any] = driver.execute_script(TIMINGS)
        driver.refresh()
        reload = stamps(driver, "map", timeout=MAP_WAIT)
        version = str(driver.capabilities.get("browserVersion", ""))
    return run_of(first=first, timings=timings, reload=reload), version


def measure(kubeconfig: Path, *, pods: int, runs: int, wait_for_deletion: bool) -> dict[str, object]:
    """Every run's figures printed as they come; the medians and the setting returned. One visit first
    is not counted: it warms the dashboard process (its first lists and watches) and the host's page
    cache for chromium, so that the counted runs measure the same thing."""
    token = kubeconfigs.bearer_token(kubeconfig)
    namespace = f"dashboard-bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="kubelab-dashboard-bench-") as work:
        kubectl = Kubectl(kubeconfig, cache_dir=Path(work) / "kubectl-cache")
        try:
            began = time.monotonic()
            running_pods(kubectl, namespace, pods)
            print(f"{pods} pods Running in {namespace} after {time.monotonic() - began:.1f} s", flush=True)
            busy = settle()  # the pods' start-up work done, as far as the machine lets it be
            with dashboard(kubeconfig, Path(work) / "dashboard.log") as url:
                script = observer_script(namespace, pods)
                warm_up, version = one_run(url, token, script)
                print(f"dashboard {url}, chromium {version}, host busy {busy:.0%} before the runs", flush=True)
                print(table([warm_up])[0], flush=True)
                print("warm-up " + table([warm_up])[1].removeprefix(f"{1:<8}"), flush=True)
                done: list[Run] = []
                for number in range(1, runs + 1):
                    done.append(one_run(url, token, script)[0])
                    print(table(done)[number], flush=True)
                print(table(done)[-1], flush=True)
            return {
                "pods": pods,
                "runs": runs,
                **medians(done),
                "chromium": version,
                "busy_before": round(busy, 2),
                "busy_after": round(busy_fraction(), 2),
            }
        finally:
            wait = ("--wait=true", "--timeout=180s") if wait_for_deletion else ("--wait=false",)
            kubectl("delete", "namespace", namespace, "--ignore-not-found", *wait, timeout=200)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kubeconfig", type=Path, help="measure this cluster instead of a fresh local lab")
    parser.add_argument("--pods", type=positive, default=100, help="pods the map is to show (default 100)")
    parser.add_argument("--runs", type=positive, default=5, help="fresh-browser visits measured (default 5)")
    args = parser.parse_args(argv)
    try:
        packages.ensure([packages.CHROMIUM, packages.CHROMEDRIVER])
    except HostError as exc:
        print(f"benchmark dashboard: {exc}", file=sys.stderr)
        return 1
    try:
        if args.kubeconfig:
            figures = measure(args.kubeconfig, pods=args.pods, runs=args.runs, wait_for_deletion=True)
        else:
            with local_lab(extra=["--nodes", "1"]) as target:
                figures = measure(target.kubeconfig, pods=args.pods, runs=args.runs, wait_for_deletion=False)
    except (BenchmarkError, CommandFailed) as exc:
        print(f"benchmark dashboard: {exc}", file=sys.stderr)
        return 1
    emit("dashboard", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
