"""The lab's API server as the host side asks it small things (which nodes are Ready, delete a Node),
with the admin's token from the lab's PKI. A few standard-library calls: the host side needs no full
client for this, and ``kubelab status`` stays quick to start."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provisioner.errors import ComponentError
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import ADMIN, Pki
from provisioner.system.waiting import wait_for


@dataclass(frozen=True)
class LabApi:
    server: str  # e.g. https://127.0.0.1:6443
    paths: LabPaths

    def call(self, method: str, path: str, *, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, JSON body)``; ``(0, {})`` when the server cannot be reached."""
        pki = Pki(self.paths.pki)
        token = pki.read_tokens().get(ADMIN.key, "")
        try:
            context = ssl.create_default_context(cafile=str(pki.ca_cert))
        except (OSError, ssl.SSLError):
            return 0, {}
        request = urllib.request.Request(
            f"{self.server}{path}",
            method=method,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return int(response.status), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}

    def node_readiness(self) -> dict[str, str]:
        """Node name -> Ready or NotReady; empty when the API server does not answer."""
        code, body = self.call("GET", "/api/v1/nodes")
        if code != 200:
            return {}
        out = {}
        for item in body.get("items", []):
            conditions = (item.get("status") or {}).get("conditions") or []
            ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), "Unknown")
            out[item["metadata"]["name"]] = "Ready" if ready == "True" else "NotReady"
        return out

    def delete_node(self, name: str) -> int:
        """DELETE the Node; the HTTP status (200, 202 or 404 mean it is gone or going)."""
        code, _ = self.call("DELETE", f"/api/v1/nodes/{name}")
        return code


def wait_nodes_ready(api: LabApi, names: list[str], *, timeout: float, say: Callable[[str], None]) -> None:
    """Wait until every node in ``names`` is Ready; ComponentError naming those that are not."""
    began = time.monotonic()

    def all_ready() -> bool:
        readiness = api.node_readiness()
        return all(readiness.get(n) == "Ready" for n in names)

    if not wait_for(all_ready, timeout=timeout, interval=1.0):
        readiness = api.node_readiness()
        late = [f"{n} ({readiness.get(n, 'not registered')})" for n in names if readiness.get(n) != "Ready"]
        raise ComponentError(f"nodes not Ready after {timeout:.0f}s: {', '.join(late)}; see: kubelab logs NODE kubelet")
    say(f"  nodes: {', '.join(names)} Ready ({time.monotonic() - began:.1f}s)")
