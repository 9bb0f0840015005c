"""kubectl logs and exec through the API server to the kubelet of a lab's real node: whole logs,
--tail, -f to the end, -c, --previous; commands with their output, exit code, stdin and a terminal;
and kube's messages when neither can be had."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually


@pytest.fixture(scope="module")
def k(node_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    """kubectl on the session's node lab, in a namespace of this module's own (its context's default)."""
    namespace = f"logs-{uuid.uuid4().hex[:6]}"
    kubeconfig = tmp_path_factory.mktemp("logs-kubeconfig") / "config"
    shutil.copy(node_lab.kubeconfig, kubeconfig)
    k = Kubectl(kubeconfig, cache_dir=tmp_path_factory.mktemp("logs-kubectl"))
    k.ok("create", "namespace", namespace)
    k.ok("config", "set-context", "--current", f"--namespace={namespace}")
    yield k
    k("delete", "namespace", namespace, "--wait=false")


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": list(containers), **spec},
    }


def counting(name: str, lines: int, pause: float = 0) -> dict[str, Any]:
    script = f"for i in $(seq {lines}); do echo {name} $i; sleep {pause}; done"
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script]}


def phase(k: Kubectl, name: str) -> str:
    return str(k.json("get", "pod", name)["status"].get("phase", ""))


def test_logs_of_a_finished_pod_whole_and_tailed(k: Kubectl) -> None:
    k.ok("apply", "-f", "-", stdin=manifest(pod("count", counting("count", 5), restartPolicy="Never")))
    eventually(lambda: phase(k, "count") == "Succeeded", timeout=60, what="the pod to finish")
    assert k.ok("logs", "count").splitlines() == [f"count {i}" for i in range(1, 6)]
    assert k.ok("logs", "count", "--tail=2").splitlines() == ["count 4", "count 5"]


def test_follow_streams_until_the_container_ends(k: Kubectl) -> None:
    k.ok("apply", "-f", "-", stdin=manifest(pod("slow", counting("slow", 4, pause=0.5), restartPolicy="Never")))
    eventually(lambda: phase(k, "slow") in ("Running", "Succeeded"), timeout=60, what="the pod to run")
    followed = subprocess.run(
        ["kubectl", f"--kubeconfig={k.kubeconfig}", "logs", "-f", "slow"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"slow {i}" for i in range(1, 5)]


def test_a_pod_of_two_containers_is_asked_for_one_of_them(k: Kubectl) -> None:
    two = pod("two", counting("a", 1), counting("b", 1), restartPolicy="Never")
    k.ok("apply", "-f", "-", stdin=manifest(two))
    eventually(lambda: phase(k, "two") == "Succeeded", timeout=60, what="the pod to finish")
    defaulted = k("logs", "two")  # kubectl itself picks the first container and says so
    assert defaulted.ok and defaulted.out.strip() == "a 1" and 'Defaulted container "a"' in defaulted.err
    assert k.ok("logs", "two", "-c", "b").strip() == "b 1"
    namespace = k.ok("config", "view", "--minify", "-o", "jsonpath={..namespace}")
    refused = k("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/two/log")  # asked without a container
    assert not refused.ok and "a container name must be specified for pod two, choose one of: [a b]" in refused.err


def test_previous_shows_the_run_before_a_restart(k: Kubectl) -> None:
    crash = {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo run $(cat /proc/uptime); exit 1"]}
    k.ok("apply", "-f", "-", stdin=manifest(pod("again", crash)))
    eventually(
        lambda: k.json("get", "pod", "again")["status"].get("containerStatuses", [{}])[0].get("restartCount", 0) >= 1,
        timeout=60,
        what="a restart",
    )
    previous, current = k.ok("logs", "again", "--previous"), k.ok("logs", "again")
    assert previous.startswith("run ") and current.startswith("run ") and previous != current


def test_a_pod_without_a_node_has_no_logs_yet(k: Kubectl) -> None:
    stuck = pod("stuck", counting("main", 1), nodeSelector={"no-such": "label"})
    k.ok("apply", "-f", "-", stdin=manifest(stuck))
    refused = k("logs", "stuck")
    assert not refused.ok and "pod stuck does not have a host assigned" in refused.err


@pytest.fixture(scope="module")
def box(k: Kubectl) -> str:
    k.ok(
        "apply",
        "-f",
        "-",
        stdin=manifest(pod("box", {"name": "main", "image": "busybox", "command": ["sleep", "3600"]})),
    )
    eventually(lambda: phase(k, "box") == "Running", timeout=60, what="the pod to run")
    return "box"


# kubectl 1.32 speaks WebSocket channels, and SPDY/3.1 with WebSockets turned off (its fallback, and
# what older clients and client-go's SPDY executor speak)
TRANSPORTS = {"websocket": (), "spdy": (("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),)}


@pytest.fixture(params=sorted(TRANSPORTS))
def over(k: Kubectl, request: pytest.FixtureRequest) -> Kubectl:
    return dataclasses.replace(k, env=TRANSPORTS[request.param])


def test_exec_runs_a_command_with_its_output_streams_and_exit_code(over: Kubectl, box: str) -> None:
    ran = over("exec", box, "--", "sh", "-c", "echo out; echo err >&2; hostname; exit 3")
    assert ran.code == 3
    assert ran.out.splitlines() == ["out", box]  # the pod's own hostname
    assert "err" in ran.err and "command terminated with exit code 3" in ran.err


def test_exec_passes_stdin(over: Kubectl, box: str) -> None:
    assert over.ok("exec", "-i", box, "--", "cat", stdin="hello from stdin\n") == "hello from stdin\n"


def test_exec_with_a_terminal_runs_an_interactive_shell(over: Kubectl, box: str) -> None:
    # the terminal kubectl runs in is 31x97: the shell in the pod sees its size once kubectl's resize came
    inner = "sleep 1; stty size; exec sh"
    command = f"stty rows 31 cols 97; kubectl --kubeconfig={over.kubeconfig} exec -it {box} -- sh -c '{inner}'"
    session = subprocess.run(
        ["script", "-qfec", command, "/dev/null"],
        input="tty; echo inside $(hostname); exit 4\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, **dict(over.env)),
    )
    assert session.returncode == 4, session.stdout + session.stderr
    assert "31 97" in session.stdout, session.stdout
    assert "/dev/pts/" in session.stdout and f"inside {box}" in session.stdout


def test_exec_into_a_completed_pod_is_refused(k: Kubectl) -> None:
    k.ok("apply", "-f", "-", stdin=manifest(pod("done", counting("done", 1), restartPolicy="Never")))
    eventually(lambda: phase(k, "done") == "Succeeded", timeout=60, what="the pod to finish")
    refused = k("exec", "done", "--", "true")
    assert not refused.ok and "cannot exec into a container in a completed pod" in refused.err


def test_each_pod_is_given_a_resolver_by_its_dns_policy(k: Kubectl) -> None:
    show = {"name": "main", "image": "busybox", "command": ["cat", "/etc/resolv.conf"]}
    own = {"nameservers": ["192.0.2.53"], "searches": ["corp.example"], "options": [{"name": "ndots", "value": "2"}]}
    k.ok("apply", "-f", "-", stdin=manifest(pod("resolv-cluster", show, restartPolicy="Never")))
    k.ok(
        "apply",
        "-f",
        "-",
        stdin=manifest(pod("resolv-own", show, restartPolicy="Never", dnsPolicy="None", dnsConfig=own)),
    )
    done = lambda: phase(k, "resolv-cluster") == phase(k, "resolv-own") == "Succeeded"  # noqa: E731
    eventually(done, timeout=60, what="both pods to finish")
    # ClusterFirst: the kube-dns Service's address (the tenth of the service range) and the namespace first
    search, *rest = k.ok("logs", "resolv-cluster").splitlines()
    # (then the node's own search domains, if the host has any)
    namespace = k.ok("config", "view", "--minify", "-o", "jsonpath={..namespace}")
    assert search.startswith(f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local")
    assert rest == ["nameserver 10.96.0.10", "options ndots:5"]
    assert k.ok("logs", "resolv-own").splitlines() == [
        "search corp.example",
        "nameserver 192.0.2.53",
        "options ndots:2",
    ]
    refused = k("run", "no-servers", "--image=busybox", "--overrides", '{"spec": {"dnsPolicy": "None"}}')
    assert not refused.ok and "must provide `dnsConfig` when `dnsPolicy` is None" in refused.err
