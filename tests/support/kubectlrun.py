"""The real kubectl, run from an async unit test against an in-process API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.components import require_kubectl

KUBECTL_SECONDS = 60.0


async def run_kubectl(kubeconfig: Path, *args: str) -> tuple[int, str]:
    """kubectl's exit code and its output (stdout and stderr together); the test fails in CI (and is
    skipped elsewhere) when kubectl is not installed; a kubectl that runs past a minute fails it."""
    binary = require_kubectl()
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--kubeconfig={kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), KUBECTL_SECONDS)
    return process.returncode or 0, out.decode()
