"""Liveness, readiness and startup probes, as kube's prober runs them.

One worker per probe of a running container: it waits ``initialDelaySeconds``, then probes every
``periodSeconds`` with ``timeoutSeconds``, and changes its result only after ``successThreshold``
successes or ``failureThreshold`` failures in a row. Until a startup probe has succeeded, the other
two wait. A failed liveness or startup probe has the container killed (and restarted as its pod's
restartPolicy says); readiness decides the container's ``ready`` and so the pod's Ready condition.

httpGet and tcpSocket connect to the pod's IP from inside the pod's network namespace: the socket is
made there (``setns`` on a helper thread) and then used from the event loop, so the kubelet itself
stays in the node's host namespace. exec runs the command in the container (an exec through
containerd's API).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from opentelemetry.trace import INVALID_SPAN, Span

log = logging.getLogger(__name__)

Kind = Literal["liveness", "readiness", "startup"]
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_setns_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    success: bool
    message: str = ""


def socket_in_netns(netns: Path, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket that belongs to network namespace ``netns`` (made on this thread, which enters
    the namespace for that moment and comes back)."""
    with _setns_lock:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(netns, os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
            try:
                made = socket.socket(family, socket.SOCK_STREAM)
            finally:
                if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would leave the thread astray
                    raise OSError(ctypes.get_errno(), "setns back failed")
            made.setblocking(False)
            return made
        finally:
            os.close(own)
            os.close(target)


def port_of(value: Any, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(value, int):
        return value
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    if str(value).isdigit():
        return int(value)
    raise ValueError(f"port {value!r} is not a number nor a named port of the container")


async def _connect(
    netns: Path, host: str, port: int, *, seconds: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    sock = await loop.run_in_executor(None, socket_in_netns, netns)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), seconds)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def tcp_probe(netns: Path, host: str, port: int, *, seconds: float) -> Outcome:
    try:
        _, writer = await _connect(netns, host, port, seconds=seconds)
    except (OSError, TimeoutError) as exc:
        return Outcome(False, f"dial tcp {host}:{port}: {exc.strerror if isinstance(exc, OSError) else 'i/o timeout'}")
    writer.close()
    return Outcome(True)


def _unverified_tls() -> ssl.SSLContext:
    """What kube's HTTPS probes use: TLS without checking the container's certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def http_probe(
    netns: Path,
    host: str,
    port: int,
    *,
    path: str,
    seconds: float,
    headers: Mapping[str, str],
    scheme: str = "HTTP",
) -> Outcome:
    """kube's rule: a status from 200 to 399 is success. ``scheme`` HTTPS speaks TLS to the container and
    does not check its certificate, as kube's prober does."""
    url = f"{scheme.lower()}://{host}:{port}{path}"
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await _connect(netns, host, port, seconds=seconds)
            if scheme.upper() == "HTTPS":
                await writer.start_tls(_unverified_tls())
            lines = [
                f"GET {path or '/'} HTTP/1.1",
                f"Host: {host}:{port}",
                "User-Agent: kube-probe/1.37",
                "Connection: close",
            ]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            status_line = (await reader.readline()).decode(errors="replace").split()
            writer.close()
    except TimeoutError:
        return Outcome(False, f'Get "{url}": context deadline exceeded')
    except OSError as exc:  # ssl.SSLError included
        return Outcome(False, f'Get "{url}": {exc.strerror or exc}')
    code = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
    if 200 <= code < 400:
        return Outcome(True)
    return Outcome(False, f"HTTP probe failed with statuscode: {code}")


@dataclass
class ProbeState:
    """What the kubelet's status needs from the probes of one container run."""

    ready: bool = False  # readiness (True at once when there is no readiness probe)
    started: bool = False  # startup (True at once when there is no startup probe)


def _untraced(_kind: Kind) -> AbstractContextManager[Span]:
    return contextlib.nullcontext(INVALID_SPAN)


class ContainerProber:
    """The probe workers of one container run."""

    def __init__(
        self,
        *,
        container: Mapping[str, Any],
        container_id: str,
        netns: Path,
        pod_ip: str,
        exec_probe: Callable[[str, list[str], float], Any],
        on_change: Callable[[], None],
        on_failure: Callable[[Kind, str], Any],
        traced: Callable[[Kind], AbstractContextManager[Span]] | None = None,
    ) -> None:
        self.container = container
        self.container_id = container_id
        self.netns = netns
        self.pod_ip = pod_ip
        self.exec_probe = exec_probe
        self.on_change = on_change
        self.on_failure = on_failure
        self.traced = traced or _untraced  # the span one probe is recorded in (while its pod's start is traced)
        self.state = ProbeState(ready="readinessProbe" not in container, started="startupProbe" not in container)
        self._started = asyncio.Event()
        if self.state.started:
            self._started.set()
        self.tasks = [
            asyncio.create_task(self._run(kind, container[f"{kind}Probe"]), name=f"{kind} probe {container_id}")
            for kind in ("startup", "liveness", "readiness")
            if f"{kind}Probe" in container
        ]

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def probe(self, spec: Mapping[str, Any]) -> Outcome:
        timeout = float(spec.get("timeoutSeconds", 1))
        if "exec" in spec:
            code, output = await self.exec_probe(self.container_id, list(spec["exec"].get("command") or []), timeout)
            return Outcome(code == 0, output.strip() or f"command exited with {code}")
        try:
            if "httpGet" in spec:
                get = spec["httpGet"]
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                host = get.get("host") or self.pod_ip
                return await http_probe(
                    self.netns,
                    host,
                    port_of(get["port"], self.container),
                    path=get.get("path", "/"),
                    seconds=timeout,
                    headers=headers,
                    scheme=str(get.get("scheme") or "HTTP"),
                )
            if "tcpSocket" in spec:
                check = spec["tcpSocket"]
                return await tcp_probe(
                    self.netns,
                    check.get("host") or self.pod_ip,
                    port_of(check["port"], self.container),
                    seconds=timeout,
                )
        except ValueError as exc:
            return Outcome(False, str(exc))
        return Outcome(False, "the probe names no handler (exec, httpGet, tcpSocket)")

    async def _run(self, kind: Kind, spec: Mapping[str, Any]) -> None:
        if kind != "startup":
            await self._started.wait()
        await asyncio.sleep(float(spec.get("initialDelaySeconds", 0)))
        period = max(1.0, float(spec.get("periodSeconds", 10)))
        needed_successes = int(spec.get("successThreshold", 1))
        needed_failures = int(spec.get("failureThreshold", 3))
        successes = failures = 0
        while True:
            with self.traced(kind) as span:
                outcome = await self.probe(spec)
                if span.is_recording():
                    span.set_attribute("result", "success" if outcome.success else "failure")
                    if not outcome.success:
                        span.set_attribute("message", outcome.message)
            if outcome.success:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
            if kind == "readiness":
                if outcome.success and successes >= needed_successes and not self.state.ready:
                    self.state.ready = True
                    self.on_change()
                elif not outcome.success and failures >= needed_failures and self.state.ready:
                    self.state.ready = False
                    self.on_change()
                if not outcome.success and failures == needed_failures:
                    await self.on_failure(kind, outcome.message)
            elif kind == "startup" and outcome.success:
                self.state.started = True
                self._started.set()
                self.on_change()
                return
            elif not outcome.success and failures >= needed_failures:
                await self.on_failure(kind, outcome.message)
                return  # the container is being killed; its next run gets new probes
            await asyncio.sleep(period)
