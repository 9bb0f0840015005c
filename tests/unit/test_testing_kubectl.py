"""kubelab_testing's commands and kubectl, against a stand-in kubectl (a script declared below) that says
what it was given and prints watch events as kubectl does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubelab_testing.commands import CommandFailed, Result, run, stop
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.waiting import NotInTime

# argv as JSON on stdout, stdin on stderr; `get ... -w`: two events (the second over several lines, as
# kubectl prints a document), then it waits to be stopped; `fail`: exit 3
FAKE_KUBECTL = """#!{python}
import json, sys, time
args = sys.argv[1:]
if "fail" in args:
    print("no such thing", file=sys.stderr)
    sys.exit(3)
if "-w" in args:
    print(json.dumps({{"type": "ADDED", "object": {{"metadata": {{"name": "a"}}}}}}), flush=True)
    print(json.dumps({{"type": "DELETED", "object": {{"metadata": {{"name": "a"}}}}}}, indent=2), flush=True)
    time.sleep(600)
print(json.dumps(args))
print(sys.stdin.read(), end="", file=sys.stderr)
"""


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> str:
    script = tmp_path / "kubectl"
    script.write_text(FAKE_KUBECTL.format(python=sys.executable))
    script.chmod(0o755)
    return str(script)


def test_kubectl_is_bound_to_the_kubeconfig_and_its_own_cache(fake_kubectl: str, tmp_path: Path) -> None:
    kubectl = Kubectl(tmp_path / "kc", cache_dir=tmp_path / "cache", binary=fake_kubectl)
    said = kubectl("get", "pods", stdin="hello")
    assert said.ok and said.err == "hello"
    cache = ["--cache-dir", f"{tmp_path}/cache"]
    assert json.loads(said.out) == ["--kubeconfig", f"{tmp_path}/kc", *cache, "get", "pods"]
    without_cache = Kubectl(tmp_path / "kc", binary=fake_kubectl)
    assert json.loads(without_cache.ok("version")) == ["--kubeconfig", f"{tmp_path}/kc", "version"]


def test_ok_fails_the_test_with_what_kubectl_said(fake_kubectl: str, tmp_path: Path) -> None:
    kubectl = Kubectl(tmp_path / "kc", binary=fake_kubectl)
    with pytest.raises(CommandFailed, match=r"^kubectl get fail failed \(3\): no such thing") as failed:
        kubectl.ok("get", "fail")
    assert isinstance(failed.value, AssertionError)


def test_a_watch_is_followed_event_by_event_and_stopped(fake_kubectl: str, tmp_path: Path) -> None:
    kubectl = Kubectl(tmp_path / "kc", binary=fake_kubectl)
    with kubectl.watch("pods") as watch:
        watch.wait_for(lambda events: len(events) == 2, timeout=30, what="two events")
        assert [(kind, obj["metadata"]["name"]) for kind, obj in watch.events] == [("ADDED", "a"), ("DELETED", "a")]
        with pytest.raises(NotInTime, match=r"^a third event did not hold within 0\.2s \(last value: '2 events'\)"):
            watch.wait_for(lambda events: len(events) == 3, timeout=0.2, what="a third event")
        assert watch.running
    assert not watch.running  # stopped on leaving the block


def test_manifest_is_yaml_documents_in_order() -> None:
    text = manifest({"kind": "Namespace", "metadata": {"name": "a"}}, {"kind": "ConfigMap"})
    assert text == "kind: Namespace\nmetadata:\n  name: a\n---\nkind: ConfigMap\n"


def test_run_adds_variables_and_shows_or_keeps_the_output(capfd: pytest.CaptureFixture[str]) -> None:
    kept = run(
        [sys.executable, "-c", "import os; print(os.environ['EXTRA'], os.environ['PATH'] != '')"],
        timeout=30,
        env={"EXTRA": "yes"},
    )
    assert kept == Result(0, "yes True\n", "")
    shown = run([sys.executable, "-c", "print('progress')"], timeout=30, show=True)
    assert shown == Result(0, "", "") and capfd.readouterr().out == "progress\n"
    with pytest.raises(subprocess.TimeoutExpired):
        run(["sleep", "5"], timeout=0.1)


def test_checked_returns_the_output_of_a_success() -> None:
    assert Result(0, "done", "").checked("kubelab fault list") == "done"
    with pytest.raises(CommandFailed, match=r"^kubelab fault crash w1 failed \(1\): no lab"):
        Result(1, "", "no lab").checked("kubelab fault crash w1")


def test_stop_kills_a_process_that_ignores_sigterm() -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    began = time.monotonic()
    stop(stubborn, timeout=0.5)
    assert stubborn.returncode == -9 and time.monotonic() - began < 5
    polite = subprocess.Popen(["sleep", "60"])
    stop(polite)
    assert polite.returncode == -15
    stop(polite)  # stopping again is harmless
