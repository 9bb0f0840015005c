"""The executor: puts a :class:`~agents.ingress.planner.Plan` into effect on the nginx master this
process runs (the only module here that touches files and processes).

Applying a plan: nothing at all when its text and files are those applied last; otherwise the TLS
files are written (each atomically, under a name carrying its content's digest, so the configuration
that serves now never reads a half-written or newer file), the configuration is written beside the
live one and checked with ``nginx -t``; only a configuration nginx accepts replaces the live one, and
the master is told to reload (SIGHUP: it starts new workers with the new configuration and lets the
old ones finish their requests). A refused configuration changes nothing: the previous one keeps
serving, and the caller learns nginx's own words. TLS files no configuration names any more are
removed after a reload.

The master runs in the foreground (``daemon off;`` is in the configuration) as this process's child;
:meth:`Nginx.wait` returns when it exits, which ends the controller (its pod's restart policy then
starts both again), and :meth:`Nginx.stop` shuts it down gracefully (SIGQUIT) on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from agents.ingress.planner import Plan
from agents.machinery.errors import KubelabError

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


Fingerprint = tuple[str, frozenset[tuple[str, bytes]]]  # a plan's text and files


class NginxError(KubelabError):
    """nginx could not be started, checked or reloaded, or it exited."""


@dataclass(frozen=True)
class Applied:
    changed: bool  # the live configuration changed (and nginx was told to reload)
    refused: str = ""  # nginx's reason for refusing the new configuration ("" when it took it)


def write_atomically(path: Path, content: bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(partial, mode)
    os.replace(partial, path)


class Nginx:
    def __init__(self, *, binary: str, config_dir: Path) -> None:
        self.binary = binary
        self.config_dir = config_dir
        self.config = config_dir / "nginx.conf"
        self.process: asyncio.subprocess.Process | None = None
        self._applied: Fingerprint | None = None
        self._refused: tuple[Fingerprint, str] | None = None  # the last plan refused, and why
        self.reloads = 0

    # --- checking and applying ---------------------------------------------------------------------

    async def check(self, path: Path) -> str:
        """nginx's complaint about the configuration at ``path`` ("" when it accepts it)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                "-t",
                "-q",
                "-e",
                "stderr",
                "-c",
                str(path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise NginxError(f"cannot run {self.binary}: {exc.strerror or exc}") from exc
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise NginxError(f"{self.binary} -t did not finish in {CHECK_TIMEOUT:.0f}s") from exc
        if proc.returncode == 0:
            return ""
        lines = [line.strip() for line in out.decode(errors="replace").splitlines() if line.strip()]
        emerg = [line for line in lines if "[emerg]" in line]
        return (emerg or lines or [f"exit status {proc.returncode}"])[0]

    def _fingerprint(self, plan: Plan) -> Fingerprint:
        return (plan.config, frozenset((f.path, f.content) for f in plan.files))

    async def apply(self, plan: Plan) -> Applied:
        """Put ``plan`` into effect (see the module's docstring); a reload only when something changed."""
        fingerprint = self._fingerprint(plan)
        if fingerprint == self._applied:
            return Applied(changed=False)
        if self._refused is not None and self._refused[0] == fingerprint:
            return Applied(changed=False, refused=self._refused[1])
        candidate = self._write(plan)
        refused = await self.check(candidate)
        if refused:
            candidate.unlink(missing_ok=True)
            self._prune(self._live_files())
            self._refused = (fingerprint, refused)
            log.warning("nginx refused the new configuration, the previous one keeps serving: %s", refused)
            return Applied(changed=False, refused=refused)
        os.replace(candidate, self.config)
        self._applied, self._refused = fingerprint, None
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGHUP)
            self.reloads += 1
            log.info("nginx reloading its configuration (%d servers)", len(plan.servers))
        self._prune({f.path for f in plan.files})
        return Applied(changed=True)

    def _write(self, plan: Plan) -> Path:
        """The plan's TLS files, and its configuration beside the live one (returned)."""
        for tls in plan.files:
            path = Path(tls.path)
            if not path.is_relative_to(self.config_dir):
                raise NginxError(f"{path} is outside {self.config_dir}")
            if not path.exists() or path.read_bytes() != tls.content:
                write_atomically(path, tls.content, mode=0o600)
        candidate = self.config.with_name("nginx.conf.next")
        write_atomically(candidate, plan.config.encode())
        return candidate

    def _live_files(self) -> set[str]:
        if self._applied is None:
            return set()
        return {path for path, _ in self._applied[1]}

    def _prune(self, keep: set[str]) -> None:
        directory = self.config_dir / "ssl"
        if not directory.is_dir():
            return
        for path in directory.iterdir():
            if str(path) not in keep and path.suffix == ".pem":
                with contextlib.suppress(OSError):
                    path.unlink()

    # --- the master process ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the master on the live configuration (:meth:`apply` must have written one)."""
        if not self.config.exists():
            raise NginxError(f"no configuration at {self.config} to start nginx with")
        try:
            self.process = await asyncio.create_subprocess_exec(
                self.binary, "-e", "stderr", "-c", str(self.config), stdin=asyncio.subprocess.DEVNULL
            )
        except OSError as exc:
            raise NginxError(f"cannot run {self.binary}: {exc.strerror or exc}") from exc
        log.info("nginx master started (pid %d) with %s", self.process.pid, self.config)

    async def wait(self) -> None:
        """Return when the master exits; raise NginxError saying how."""
        if self.process is None:
            raise NginxError("nginx was never started")
        code = await self.process.wait()
        raise NginxError(f"nginx exited with status {code}")

    async def stop(self) -> None:
        """Graceful shutdown (SIGQUIT: the workers finish their requests), SIGKILL after a while."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGQUIT)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
