"""The official Python client's interactive exec (``stream(..., stdin=True, _preload_content=False)``)
through the API server to a real node's kubelet: lines written to a shell's stdin come back on stdout
and stderr as they are written (the client sends them as text messages), and the exit status arrives
on the error channel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.stream import stream

from kubelab_testing.kubectl import Kubectl, running_pod
from kubelab_testing.lab import Lab


@pytest.fixture(scope="module")
def core(node_lab: Lab) -> Iterator[client.CoreV1Api]:
    connect: Any = config.new_client_from_config
    api = connect(config_file=str(node_lab.kubeconfig))
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="module")
def shell_pod(node_kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    with running_pod(
        node_kubectl, "shell", {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}, prefix="pyexec"
    ) as ns:
        yield ns, "shell"


def interactive_shell(core: client.CoreV1Api, ns: str, name: str) -> Any:
    """``/bin/sh`` in the pod, its streams kept open for writing and reading (the client's interactive exec)."""
    return stream(
        core.connect_get_namespaced_pod_exec,
        name,
        ns,
        command=["/bin/sh"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )


def test_lines_written_to_an_interactive_shell_come_back_on_stdout_and_stderr(
    core: client.CoreV1Api, shell_pod: tuple[str, str]
) -> None:
    ns, name = shell_pod
    resp = interactive_shell(core, ns, name)
    try:
        resp.write_stdin("echo x\n")
        assert resp.readline_stdout(timeout=5) == "x"
        resp.write_stdin("echo second line; echo to stderr >&2\n")
        assert resp.readline_stdout(timeout=5) == "second line"
        assert resp.readline_stderr(timeout=5) == "to stderr"
        resp.write_stdin(b"echo sent as bytes\n")  # the client sends bytes as a binary message
        assert resp.readline_stdout(timeout=5) == "sent as bytes"
        resp.write_stdin("exit 7\n")
        resp.run_forever(timeout=10)
        assert not resp.is_open()
        assert resp.returncode == 7
    finally:
        resp.close()


def test_update_gathers_the_output_and_a_clean_exit_reads_zero(
    core: client.CoreV1Api, shell_pod: tuple[str, str]
) -> None:
    ns, name = shell_pod
    resp = interactive_shell(core, ns, name)
    try:
        resp.write_stdin("printf 'a\\nb\\n'; exit 0\n")
        deadline = time.monotonic() + 15
        while resp.is_open() and time.monotonic() < deadline:
            resp.update(timeout=1)
        assert not resp.is_open()
        assert resp.read_stdout() == "a\nb\n"
        assert resp.returncode == 0
    finally:
        resp.close()
