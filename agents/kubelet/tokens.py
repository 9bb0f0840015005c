"""The kubelet's ServiceAccount tokens (kube's token manager): one per pod and projected source,
requested from the API server bound to the pod (TokenRequest), kept, and requested again once 80 % of
its life has passed, when the kubelet rewrites the pod's projected volumes (``refresh``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.kubelet.volumes import VolumeError
from agents.machinery.client import ApiError, Client
from agents.machinery.objects import parse_time
from agents.machinery.resources import SERVICE_ACCOUNTS

RENEW_AT = 0.8  # of a token's life


@dataclass(frozen=True)
class Held:
    token: str
    issued: float
    expires: float

    def due(self, now: float) -> bool:
        return now >= self.issued + RENEW_AT * (self.expires - self.issued)


Key = tuple[str, str, str, str, int]  # pod UID, namespace, account, audience, seconds


class TokenManager:
    def __init__(self, client: Client, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._held: dict[Key, Held] = {}

    async def token(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> str:
        meta = pod["metadata"]
        account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
        audience = str(source.get("audience") or "")
        seconds = int(source.get("expirationSeconds") or 3600)
        key = (str(meta.get("uid", "")), str(meta["namespace"]), account, audience, seconds)
        held = self._held.get(key)
        now = self.clock()
        if held is not None and not held.due(now):
            return held.token
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": seconds,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta.get("uid", "")},
            },
        }
        try:
            answer = await self.client.request(
                "POST", SERVICE_ACCOUNTS.path(meta["namespace"], account, "token"), body=body
            )
        except ApiError as exc:
            raise VolumeError("FailedMount", f"failed to fetch token: {exc.status.get('message', exc)}") from exc
        status = answer.get("status") or {}
        expires = parse_time(str(status.get("expirationTimestamp"))).timestamp()
        self._held[key] = Held(str(status.get("token", "")), now, expires)
        return self._held[key].token

    def due(self, pod_uid: str) -> bool:
        """Whether a token of this pod should be requested again."""
        now = self.clock()
        return any(key[0] == pod_uid and held.due(now) for key, held in self._held.items())

    def forget(self, live: set[str]) -> None:
        """Drop the tokens of pods no longer here."""
        for key in [k for k in self._held if k[0] not in live]:
            del self._held[key]
