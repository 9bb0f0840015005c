"""The status manager: a pod's status is written only when it differs from what the pod says; a
conflict sends the caller back to the newer pod; a pod gone from the API is not an error.

The API client is a fake, declared openly: it records the pods whose status it was sent, and
answers with the failure it is given.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from agents.kubelet.podcache import PodRecord
from agents.kubelet.podstate import Attempt
from agents.kubelet.statusmanager import StatusManager, status_update
from agents.machinery.client import ApiError, Client
from agents.machinery.resources import ResourceRef

UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
HOST_IP = "192.168.150.10"


class FakeClient:
    def __init__(self, failure: ApiError | None = None) -> None:
        self.failure = failure
        self.written: list[dict[str, Any]] = []

    async def update_status(self, resource: ResourceRef, obj: dict[str, Any]) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        self.written.append(obj)
        return obj


def pod(status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "default", "uid": UID, "resourceVersion": "7"},
        "spec": {"containers": [{"name": "web", "image": "echo:1.0"}]},
    }
    if status is not None:
        body["status"] = status
    return body


def record() -> PodRecord:
    found = PodRecord(UID, "default/web", sandbox_ip="10.244.0.5", started_at=1_000_000.0)
    found.record("web", Attempt(0, "running", 1_000_001.0, container_id=f"containerd://{UID}_web_0"))
    return found


def test_a_status_the_pod_already_carries_is_not_written_again() -> None:
    current = pod({"phase": "Running"})
    assert status_update(current, {"phase": "Running"}) is None
    changed = status_update(current, {"phase": "Succeeded"})
    assert changed is not None and changed["status"] == {"phase": "Succeeded"}
    assert changed["metadata"] == current["metadata"]
    assert current["status"] == {"phase": "Running"}  # the informer's copy is left as it was


async def test_the_status_is_written_when_it_changes_and_only_then() -> None:
    client = FakeClient()
    manager = StatusManager(cast(Client, client), host_ip=HOST_IP)
    assert await manager.update(pod(), record()) == "written"
    (written,) = client.written
    assert written["status"]["phase"] == "Running" and written["status"]["podIP"] == "10.244.0.5"
    assert written["status"]["hostIP"] == HOST_IP
    # the informer brings the pod as written: nothing to send, however often the pod is synced
    again = pod(copy.deepcopy(written["status"]))
    assert await manager.update(again, record()) == "unchanged"
    assert await manager.update(again, record()) == "unchanged"
    assert len(client.written) == 1


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (ApiError({"code": 409, "reason": "Conflict", "message": "newer"}, 409), "conflict"),
        (ApiError({"code": 404, "reason": "NotFound", "message": "gone"}, 404), "gone"),
    ],
)
async def test_a_conflict_or_a_pod_gone_is_an_outcome_not_an_error(failure: ApiError, outcome: str) -> None:
    manager = StatusManager(cast(Client, FakeClient(failure)), host_ip=HOST_IP)
    assert await manager.update(pod(), record()) == outcome


async def test_other_failures_are_the_caller_s_to_retry() -> None:
    forbidden = ApiError({"code": 403, "reason": "Forbidden", "message": "no"}, 403)
    manager = StatusManager(cast(Client, FakeClient(forbidden)), host_ip=HOST_IP)
    with pytest.raises(ApiError, match="Forbidden"):
        await manager.update(pod(), record())
