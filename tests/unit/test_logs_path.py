"""The pieces of kubectl logs and exec that need no cluster: which container, which kubelet address,
tails, and the Status an exec ends with."""

from __future__ import annotations

from typing import Any

import pytest

from agents.apiserver.kubeletclient import container_for_logs, kubelet_location
from agents.apiserver.status import StatusError
from agents.kubelet.remotecommand import exit_status
from agents.kubelet.server import tail


def pod(*names: str) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {"containers": [{"name": n} for n in names]}}


def test_the_only_container_is_taken_and_a_named_one_must_exist() -> None:
    assert container_for_logs(pod("main"), "") == "main"
    assert container_for_logs(pod("a", "b"), "b") == "b"
    with pytest.raises(StatusError, match=r"choose one of: \[a b\]") as caught:
        container_for_logs(pod("a", "b"), "")
    assert caught.value.code == 400
    with pytest.raises(StatusError, match="container c is not valid for pod web"):
        container_for_logs(pod("a", "b"), "c")


def node(*addresses: tuple[str, str], port: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"addresses": [{"type": t, "address": a} for t, a in addresses]}
    if port is not None:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": port}}
    return {"metadata": {"name": "n1"}, "status": status}


def test_the_kubelet_is_reached_at_the_preferred_address_and_its_published_port() -> None:
    found = node(("Hostname", "n1"), ("InternalIP", "10.0.0.5"), port=11250)
    assert kubelet_location(found, preferred=("InternalIP", "Hostname"), override="") == ("10.0.0.5", 11250)
    assert kubelet_location(node(("Hostname", "n1")), preferred=("InternalIP", "Hostname"), override="") == (
        "n1",
        10250,
    )
    assert kubelet_location(found, preferred=("InternalIP",), override="127.0.0.1") == ("127.0.0.1", 11250)
    with pytest.raises(StatusError, match="no address"):
        kubelet_location(node(), preferred=("InternalIP",), override="")


def test_tail_keeps_the_last_lines_including_an_unfinished_one() -> None:
    assert tail(b"1\n2\n3\n", 2) == b"2\n3\n"
    assert tail(b"1\n2\n3", 1) == b"3"
    assert tail(b"1\n", 5) == b"1\n"
    assert tail(b"1\n2\n", 0) == b""


def test_an_exec_ends_with_kubes_status_for_its_exit_code() -> None:
    assert exit_status(0) == {"metadata": {}, "status": "Success"}
    failed = exit_status(3)
    assert (failed["status"], failed["reason"]) == ("Failure", "NonZeroExitCode")
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
