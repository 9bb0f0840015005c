"""``python -m agents.apiserver`` / ``kubelab-agent apiserver``: run the API server.

With more than one worker, this process supervises that many copies of itself, each serving the
same port (SO_REUSEPORT; the kernel spreads connections between them) with its own etcd
connection and watch cache. Worker 0 also bootstraps the cluster and runs the housekeeping
(compaction, allocation repair, event expiry). A worker that dies is started again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from aiohttp import web

from agents.apiserver.audit import AuditPolicyError
from agents.apiserver.auth import TokenFileError
from agents.apiserver.encryptionconfig import EncryptionConfigError
from agents.apiserver.schemas import SchemaTableError
from agents.apiserver.server import ApiServer
from agents.apiserver.settings import ApiServerSettings
from agents.apiserver.storage.errors import StorageUnavailableError
from agents.machinery import logs, tracing
from agents.machinery.settings import SettingsError, load

log = logging.getLogger("agents.apiserver")
WORKER_ENV = "KUBELAB_APISERVER_WORKER_INDEX"


async def _start_with_retries(server: ApiServer, stop: asyncio.Event) -> bool:
    delay = 0.5
    while not stop.is_set():
        try:
            await server.start()
            return True
        except StorageUnavailableError as exc:
            log.warning("waiting for etcd at %s: %s", ",".join(server.settings.etcd.servers), exc)
            await server.store.close()
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            delay = min(delay * 2, 5.0)
    return False


async def serve(settings: ApiServerSettings, *, worker: int, shared_port: bool) -> None:
    server = ApiServer(settings, leader=worker == 0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not await _start_with_retries(server, stop):
        return
    settle_garbage_collector()
    runner = web.AppRunner(server.application(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    context = server.ssl_context()
    if context is None:
        log.warning("no --tls-cert-file/--tls-private-key-file: serving plain HTTP")
    site = web.TCPSite(
        runner,
        settings.bind_address,
        settings.secure_port,
        ssl_context=context,
        reuse_address=True,
        reuse_port=shared_port,
        backlog=1024,
    )
    await site.start()
    log.info("serving on %s://%s:%d", "https" if context else "http", settings.bind_address, settings.secure_port)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    await server.stop()


def settle_garbage_collector() -> None:
    """Keep Python's collector from pausing request handling.

    A full collection walks every tracked object; with the schema tables and caches of a started
    server that is ~90 ms on the reference machine, enough to show in every p99. What exists after
    startup lives as long as the process, so it is frozen out of the collector's reach, and the
    young generation is collected less often (requests allocate many short-lived dicts).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def supervise(argv: Sequence[str], count: int) -> int:
    """Run ``count`` workers; restart any that dies; stop them all on SIGTERM or SIGINT."""
    stopping = False
    children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(index: int) -> None:
        env = dict(os.environ, **{WORKER_ENV: str(index)})
        children[index] = subprocess.Popen([sys.executable, "-m", "agents.apiserver", *argv], env=env)

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("starting %d API server workers", count)
    for number in range(count):
        spawn(number)
    restarts: dict[int, float] = {}
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = next((i for i, c in children.items() if c.pid == pid), None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        children[index].returncode = code
        if stopping:
            del children[index]
            continue
        log.error("worker %d exited with status %d; starting it again", index, code)
        if time.monotonic() - restarts.get(index, 0.0) < 5:
            time.sleep(2)  # a worker that keeps failing is not restarted in a tight loop
        restarts[index] = time.monotonic()
        spawn(index)
    return 0


def run(argv: Sequence[str]) -> int:
    try:
        settings = load(ApiServerSettings, argv, env_prefix="KUBELAB_APISERVER", prog="kubelab-agent apiserver")
    except SettingsError as exc:
        print(f"kubelab-agent apiserver: {exc}", file=sys.stderr)
        return 2
    count = settings.worker_count()
    index = os.environ.get(WORKER_ENV)
    tag = f"w{index}" if index is not None and count > 1 else ""
    logs.setup(settings.log.level, settings.log.format, tag=tag)
    if index is None and count > 1:
        return supervise(argv, count)
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        log.info("uvloop is not installed; using the default event loop")
    tracing.setup("apiserver", settings.tracing, instance=f"{socket.gethostname()}{tag and '-' + tag}")
    try:
        asyncio.run(serve(settings, worker=int(index or 0), shared_port=count > 1))
    except (SettingsError, TokenFileError, AuditPolicyError, SchemaTableError, EncryptionConfigError, OSError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        tracing.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
