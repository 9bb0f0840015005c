"""The kubelet's token manager: one request per pod and source, bound to the pod, again at 80 % of
its life; a refusal is a FailedMount in the API server's words."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.kubelet.tokens import TokenManager
from agents.kubelet.volumes import VolumeError
from agents.machinery.client import ApiError
from agents.machinery.objects import format_time

POD = {"metadata": {"name": "web", "namespace": "team", "uid": "u1"}, "spec": {"serviceAccountName": "robot"}}
SOURCE = {"expirationSeconds": 3600, "path": "token"}


class FakeClient:
    def __init__(self, now: list[float]) -> None:
        self.now = now
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.refuse = False

    async def request(self, method: str, path: str, *, body: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((path, body))
        if self.refuse:
            raise ApiError({"code": 404, "reason": "NotFound", "message": 'serviceaccounts "robot" not found'}, 404)
        expires = self.now[0] + body["spec"]["expirationSeconds"]
        return {"status": {"token": f"token-{len(self.asked)}", "expirationTimestamp": format_time(expires)}}


def test_a_token_is_requested_bound_to_the_pod_kept_and_renewed_at_80_percent_of_its_life() -> None:
    now = [1_000_000.0]
    fake = FakeClient(now)
    tokens = TokenManager(fake, clock=lambda: now[0])  # type: ignore[arg-type]
    assert asyncio.run(tokens.token(POD, SOURCE)) == "token-1"
    path, body = fake.asked[0]
    assert path == "/api/v1/namespaces/team/serviceaccounts/robot/token"
    assert body["spec"]["boundObjectRef"] == {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u1"}
    now[0] += 0.79 * 3600
    assert not tokens.due("u1") and asyncio.run(tokens.token(POD, SOURCE)) == "token-1"
    now[0] += 0.02 * 3600
    assert tokens.due("u1") and asyncio.run(tokens.token(POD, SOURCE)) == "token-2"
    tokens.forget(set())
    assert not tokens.due("u1")


def test_a_refused_request_is_a_failed_mount_with_the_api_server_s_words() -> None:
    fake = FakeClient([0.0])
    fake.refuse = True
    with pytest.raises(VolumeError) as failed:
        asyncio.run(TokenManager(fake).token(POD, SOURCE))  # type: ignore[arg-type]
    assert (
        failed.value.reason == "FailedMount"
        and str(failed.value) == 'failed to fetch token: serviceaccounts "robot" not found'
    )


def test_a_volume_that_cannot_be_set_up_is_tried_again_sooner_than_an_image_pull() -> None:
    from agents.kubelet import podstate  # noqa: PLC0415

    mount = [podstate.retry_backoff(podstate.Problem(podstate.FAILED_MOUNT, "m", 0.0, n)) for n in (1, 2, 3, 20)]
    assert mount == [0.5, 1.0, 2.0, 122.0]
    assert podstate.retry_backoff(podstate.Problem("CreateContainerConfigError", "m", 0.0, 1)) == 10.0
