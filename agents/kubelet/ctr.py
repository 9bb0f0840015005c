"""What the kubelet still asks of containerd through its client ``ctr``, and why.

- Pulling an image (``ctr images pull``): in containerd 1.6 pulling is the client's work (resolving
  the reference against the registry's hosts directory, fetching, unpacking the layers into
  snapshots); the daemon's API only stores what a client fetched. A pull happens once per image and
  node (pods name tagged images, ``IfNotPresent``), or per start of a container whose policy is
  ``Always``, never on the PLEG's relist.
- ``kubectl exec`` (``ctr tasks exec``): ``ctr`` joins the exec'd process's standard streams and
  terminal to its own, which the kubelet's server then carries over the WebSocket. One process per
  session a person opens; exec probes go through the API (:meth:`Containerd.exec`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from agents.kubelet.containers import ContainerdError, ImageNotFoundError


class Ctr:
    """One containerd namespace, through ``ctr``."""

    def __init__(self, *, address: str, namespace: str = "k8s.io", hosts_dir: str = "") -> None:
        self.address = address
        self.namespace = namespace
        self.hosts_dir = hosts_dir

    def _base(self) -> list[str]:
        return ["ctr", "--address", self.address, "--namespace", self.namespace]

    async def _run(self, operation: str, *args: str, seconds: float = 120) -> tuple[str, str]:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._base(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise ContainerdError(operation, "ctr is not installed (Debian package containerd)") from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(), seconds)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ContainerdError(operation, f"ctr did not answer within {seconds:.0f}s") from None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if process.returncode != 0:
            lines = [line for line in stderr.strip().splitlines() if line.strip()]
            message = lines[-1].removeprefix("ctr: ") if lines else f"exit code {process.returncode}"
            raise ContainerdError(operation, message)
        return stdout, stderr

    async def pull(self, reference: str) -> None:
        args = ["images", "pull"]
        if self.hosts_dir:
            args += ["--hosts-dir", self.hosts_dir]
        try:
            await self._run(f"pull {reference}", *args, reference, seconds=300)
        except ContainerdError as exc:
            if "not found" in exc.message:
                raise ImageNotFoundError(exc.operation, exc.message) from exc
            raise

    async def exec_process(
        self, container: str, argv: Sequence[str], *, tty: bool, stdin: Any, stdout: Any, stderr: Any
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in a running container with the given standard streams (``kubectl exec``)."""
        args = ["tasks", "exec", "--exec-id", f"exec-{uuid.uuid4().hex[:12]}"]
        if tty:
            args.append("--tty")
        return await asyncio.create_subprocess_exec(
            *self._base(), *args, container, *argv, stdin=stdin, stdout=stdout, stderr=stderr
        )
