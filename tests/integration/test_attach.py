"""``kubectl attach`` and ``kubectl run -i --rm`` through the API server to the kubelet of a lab's real
node: a running container's output from the moment of attaching, input to a container made with
``stdin: true``, ``stdinOnce`` ending the container's input with the session, a terminal for
``tty: true`` (``kubectl run -it``), and kube's refusal to attach to a completed pod."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.waiting import eventually


@pytest.fixture(scope="module")
def ns(node_kubectl: Kubectl) -> Iterator[str]:
    name = f"attach-{uuid.uuid4().hex[:6]}"
    node_kubectl.ok("create", "namespace", name)
    yield name
    node_kubectl("delete", "namespace", name, "--wait=false")


def run_pod(k: Kubectl, ns: str, name: str, container: dict[str, Any], **spec: Any) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "main", "image": "busybox", **container}], **spec},
    }
    k.ok("apply", "-f", "-", stdin=manifest(pod))
    eventually(lambda: phase(k, ns, name) == "Running", timeout=90, what=f"pod {name} to run")


def phase(k: Kubectl, ns: str, name: str) -> str:
    return str(k.json("get", "pod", name, "-n", ns)["status"].get("phase", ""))


class Lines:
    """The lines a process writes on stdout, as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))

    def next(self, timeout: float = 30) -> str:
        return self.queue.get(timeout=timeout)


def test_attach_shows_what_the_container_prints_from_then_on(node_kubectl: Kubectl, ns: str) -> None:
    script = "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.3; done"
    run_pod(node_kubectl, ns, "printer", {"command": ["sh", "-c", script]})
    already = len(node_kubectl.ok("logs", "printer", "-n", ns).splitlines())
    process = subprocess.Popen(
        node_kubectl.argv("attach", "printer", "-n", ns),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(process)
        seen = [lines.next() for _ in range(3)]
        numbers = [int(line.split()[1]) for line in seen]
        assert numbers[0] >= already and numbers == list(range(numbers[0], numbers[0] + 3)), seen
    finally:
        process.terminate()
        process.wait(10)
    node_kubectl("delete", "pod", "printer", "-n", ns, "--wait=false")


@pytest.mark.parametrize("websockets", ["true", "false"])  # false: kubectl's SPDY/3.1 transport
def test_attach_with_stdin_talks_to_a_container_made_with_stdin(
    node_kubectl: Kubectl, ns: str, websockets: str
) -> None:
    name = f"cat-{websockets}"
    run_pod(node_kubectl, ns, name, {"command": ["cat"], "stdin": True})
    process = subprocess.Popen(
        node_kubectl.argv("attach", "-i", name, "-n", ns),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, KUBECTL_REMOTE_COMMAND_WEBSOCKETS=websockets),
    )
    try:
        assert process.stdin is not None
        lines = Lines(process)
        for word in ("hello", "again"):
            process.stdin.write(f"{word}\n")
            process.stdin.flush()
            assert lines.next() == word
    finally:
        process.terminate()
        process.wait(10)
    assert phase(node_kubectl, ns, name) == "Running"  # without stdinOnce its input stays open
    node_kubectl("delete", "pod", name, "-n", ns, "--wait=false")


def test_stdin_once_ends_the_containers_input_with_the_session(node_kubectl: Kubectl, ns: str) -> None:
    container = {"command": ["sh", "-c", "cat; echo input ended"], "stdin": True, "stdinOnce": True}
    run_pod(node_kubectl, ns, "once", container, restartPolicy="Never")
    attached = node_kubectl("attach", "-i", "once", "-n", ns, stdin="only line\n", timeout=60)
    assert attached.ok, attached.err
    assert attached.out.splitlines() == ["only line", "input ended"]
    eventually(lambda: phase(node_kubectl, ns, "once") == "Succeeded", timeout=60, what="the pod to finish")


def test_run_interactive_and_removed_afterwards(node_kubectl: Kubectl, ns: str) -> None:
    ran = node_kubectl(
        "run",
        "asked",
        "-n",
        ns,
        "-i",
        "--rm",
        "--restart=Never",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "read answer; echo got $answer",
        stdin="forty-two\n",
        timeout=120,
    )
    assert ran.ok, ran.err
    assert "got forty-two" in ran.out.splitlines()
    assert 'pod "asked" deleted' in ran.out + ran.err
    assert not node_kubectl("get", "pod", "asked", "-n", ns).ok


def test_run_with_a_terminal_and_removed_afterwards(node_kubectl: Kubectl, ns: str) -> None:
    command = (
        f"kubectl --kubeconfig={node_kubectl.kubeconfig} run term -n {ns} -it --rm --restart=Never"
        " --image=busybox -- sh"
    )
    session = subprocess.run(
        ["script", "-qfec", command, "/dev/null"],
        input="tty; echo inside $(hostname); exit 3\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "inside term" in session.stdout, session.stdout + session.stderr
    assert "/dev/pts/" in session.stdout, session.stdout  # the container was given a terminal
    assert 'pod "term" deleted' in session.stdout, session.stdout + session.stderr
    assert not node_kubectl("get", "pod", "term", "-n", ns).ok


def test_attach_to_a_completed_pod_is_refused(node_kubectl: Kubectl, ns: str) -> None:
    node_kubectl.ok(
        "apply",
        "-f",
        "-",
        stdin=manifest(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "done", "namespace": ns},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                },
            }
        ),
    )
    eventually(lambda: phase(node_kubectl, ns, "done") == "Succeeded", timeout=60, what="the pod to finish")
    refused = node_kubectl("attach", "done", "-n", ns)
    assert not refused.ok
    assert "cannot attach a container in a completed pod; current phase is Succeeded" in refused.err
    raw = node_kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/done/attach?stdout=true")
    assert not raw.ok and "cannot attach a container in a completed pod" in raw.err, raw.err
