"""The lab's API server as the host side asks it small things (which nodes are Ready, delete a Node),
with the admin's token from the lab's PKI. A few standard-library calls: the host side needs no full
client for this, and ``kubelab status`` stays quick to start."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.errors import ComponentError
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import ADMIN, Pki
from provisioner.system.waiting import indented, timed_out, wait_for

POLL_TIMEOUT = 3.0  # one request of a wait that polls


@dataclass(frozen=True)
class Answer:
    code: int  # the HTTP status; 0 when the server could not be reached
    body: dict[str, Any]
    error: str = ""  # what went wrong, in words: "HTTP 503", "Connection refused", ...


def _reason(exc: BaseException) -> str:
    """A connection failure in words (``Connection refused``), without urllib's wrapping."""
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    return str(inner) or type(inner).__name__


def _status_message(exc: urllib.error.HTTPError) -> str:
    """The message of the Status an error answer carries, or ""."""
    try:
        status = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return ""
    return str(status.get("message") or "") if isinstance(status, dict) else ""


@dataclass(frozen=True)
class LabApi:
    server: str  # e.g. https://127.0.0.1:6443
    paths: LabPaths

    def ask(self, method: str, path: str, *, timeout: float = 5.0, body: Any = None) -> Answer:
        """One request (with ``body`` as JSON), with what went wrong in words when it did not get a 2xx
        answer: the API server's own message when it sent a Status."""
        pki = Pki(self.paths.pki)
        token = pki.read_tokens().get(ADMIN.key, "")
        try:
            context = ssl.create_default_context(cafile=str(pki.ca_cert))
        except (OSError, ssl.SSLError) as exc:
            return Answer(0, {}, f"no CA certificate to trust ({pki.ca_cert}: {_reason(exc)})")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.server}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return Answer(int(response.status), json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, {}, _status_message(exc) or f"HTTP {exc.code} {exc.reason}".strip())
        except (urllib.error.URLError, OSError) as exc:
            return Answer(0, {}, f"{self.server}: {_reason(exc)}")
        except ValueError as exc:
            return Answer(0, {}, f"{self.server}: not JSON ({exc})")

    def call(self, method: str, path: str, *, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, JSON body)``; ``(0, {})`` when the server cannot be reached."""
        answer = self.ask(method, path, timeout=timeout)
        return answer.code, answer.body

    def node_conditions(self, *, timeout: float = 5.0) -> tuple[dict[str, str], str]:
        """(node name -> ``Ready``, or ``NotReady`` with the Ready condition's reason, '') when the API
        server answers; ({}, what went wrong) when it does not."""
        answer = self.ask("GET", "/api/v1/nodes", timeout=timeout)
        if answer.code != 200:
            return {}, answer.error or f"HTTP {answer.code}"
        out = {}
        for item in answer.body.get("items", []):
            conditions = (item.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is not None and ready.get("status") == "True":
                out[item["metadata"]["name"]] = "Ready"
                continue
            why = (ready or {}).get("reason") or (ready or {}).get("message") or "no Ready condition yet"
            out[item["metadata"]["name"]] = f"NotReady ({why})"
        return out, ""

    def node_readiness(self) -> dict[str, str]:
        """Node name -> Ready or NotReady; empty when the API server does not answer."""
        conditions, _ = self.node_conditions()
        return {name: "Ready" if state == "Ready" else "NotReady" for name, state in conditions.items()}

    def delete_node(self, name: str) -> int:
        """DELETE the Node; the HTTP status (200, 202 or 404 mean it is gone or going)."""
        code, _ = self.call("DELETE", f"/api/v1/nodes/{name}")
        return code


def readiness_line(names: Sequence[str], conditions: Mapping[str, str], error: str) -> str:
    """What a wait for ``names`` to be Ready saw last: the API server's failure, or each node that is
    not Ready with its condition (``a NotReady (KubeletNotReady), b not registered``)."""
    if error:
        return f"the API server: {error}"
    late = [f"{n} {conditions.get(n, 'not registered')}" for n in names if conditions.get(n) != "Ready"]
    return ", ".join(late) or "all Ready"


def wait_nodes_ready(api: LabApi, names: list[str], *, timeout: float, say: Callable[[str], None]) -> None:
    """Wait until every node in ``names`` is Ready, saying how it goes at least every 10 s;
    ComponentError naming those that are not (and their condition) when ``timeout`` passes."""
    began = time.monotonic()
    seen: list[str] = ["nothing asked yet"]

    def all_ready() -> bool:
        conditions, error = api.node_conditions(timeout=POLL_TIMEOUT)
        seen[0] = readiness_line(names, conditions, error)
        return not error and all(conditions.get(n) == "Ready" for n in names)

    what = f"{len(names)} node{'s' if len(names) != 1 else ''} to be Ready"
    if not wait_for(
        all_ready,
        timeout=timeout,
        interval=1.0,
        what=what,
        say=indented(say),
        last=lambda: seen[0],
        slowest=POLL_TIMEOUT,
    ):
        raise ComponentError(f"{timed_out(what, timeout, seen[0])}; see: kubelab logs NODE kubelet")
    say(f"  nodes: {', '.join(names)} Ready ({time.monotonic() - began:.1f}s)")
