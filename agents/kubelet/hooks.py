"""Container lifecycle hooks (``lifecycle.postStart``, ``lifecycle.preStop``), as kube's kubelet runs them.

A hook is one handler: ``exec`` runs a command in the container (through the runtime, as exec probes
do), ``httpGet`` asks the container over HTTP or HTTPS from inside the pod's network namespace (as
http probes do: a status from 200 to 399 is success), ``sleep`` waits (preStop only: a container that
needs a moment before its SIGTERM, without a shell in its image). ``tcpSocket`` is accepted by the API
for old manifests and does nothing, as in kube.

postStart runs right after the container's start: until it ends the container is neither started
nor ready, and a failing one has the container killed (the caller's part). preStop runs before the
SIGTERM, inside the pod's termination grace period (:mod:`agents.kubelet.termination`). The failure
messages follow kube's wording, which its ``FailedPostStartHook`` and ``FailedPreStopHook`` events
carry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents.kubelet import probes

HookKind = Literal["postStart", "preStop"]
ExecFn = Callable[[str, list[str], float], Awaitable[tuple[int, str]]]
SleepFn = Callable[[float], Awaitable[None]]
POST_START_BOUND = 300.0  # seconds: a postStart that never ends would hold its pod's sync forever


@dataclass(frozen=True)
class HookResult:
    success: bool
    message: str = ""


@dataclass(frozen=True)
class HookTarget:
    """The container run a hook is for."""

    container: Mapping[str, Any]
    cid: str  # containerd's id of the run
    pod_ref: str  # kube's "name_namespace(uid)", for messages
    netns: Path | None
    pod_ip: str


def handler_of(container: Mapping[str, Any], kind: HookKind) -> dict[str, Any] | None:
    handler = (container.get("lifecycle") or {}).get(kind)
    return dict(handler) if handler else None


def _describe(handler: Mapping[str, Any]) -> str:
    if "exec" in handler:
        return f"Exec lifecycle hook ({list(handler['exec'].get('command') or [])})"
    if "httpGet" in handler:
        return f"HTTP lifecycle hook ({handler['httpGet'].get('path', '')})"
    return "Sleep lifecycle hook"


def failure_message(handler: Mapping[str, Any], target: HookTarget, error: str) -> str:
    """kube's words for a failed hook, as its events say them."""
    name = target.container.get("name", "")
    return f'{_describe(handler)} for Container "{name}" in Pod "{target.pod_ref}" failed - error: {error}'


async def run_hook(
    handler: Mapping[str, Any],
    target: HookTarget,
    *,
    exec_in: ExecFn,
    seconds: float,
    sleep: SleepFn = asyncio.sleep,
) -> HookResult:
    """Run one handler within ``seconds``; its result, with kube's message on failure."""
    if "exec" in handler:
        argv = [str(a) for a in handler["exec"].get("command") or []]
        code, output = await exec_in(target.cid, argv, seconds)
        if code == 0:
            return HookResult(True)
        error = f"command '{' '.join(argv)}' exited with {code}: {output.strip()}"
        return HookResult(False, failure_message(handler, target, error))
    if "httpGet" in handler:
        get = handler["httpGet"]
        if target.netns is None:
            return HookResult(False, failure_message(handler, target, "the pod has no network namespace"))
        try:
            port = probes.port_of(get["port"], target.container)
        except ValueError as exc:
            return HookResult(False, failure_message(handler, target, str(exc)))
        outcome = await probes.http_probe(
            target.netns,
            str(get.get("host") or target.pod_ip),
            port,
            path=str(get.get("path") or "/"),
            seconds=seconds,
            headers={h["name"]: h["value"] for h in get.get("httpHeaders") or []},
            scheme=str(get.get("scheme") or "HTTP"),
        )
        if outcome.success:
            return HookResult(True)
        return HookResult(False, failure_message(handler, target, outcome.message))
    if "sleep" in handler:
        await sleep(min(float(handler["sleep"].get("seconds") or 0), seconds))
        return HookResult(True)
    return HookResult(True)  # tcpSocket: accepted, does nothing
