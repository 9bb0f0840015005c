"""Programs a test or a benchmark runs (kubectl, ``kubelab``, ssh) and processes it starts, handled one way.

Every program ends in one :class:`Result` (exit code, output, errors), run with a deadline so that a hung
program fails the test instead of stopping the run; a process started in the background is stopped by
:func:`stop`, politely first.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class CommandFailed(AssertionError):
    """A program a test relies on exited with an error."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def checked(self, command: str) -> str:
        """The output; :class:`CommandFailed`, naming ``command`` and saying what it printed, unless it succeeded."""
        if not self.ok:
            raise CommandFailed(f"{command} failed ({self.code}): {self.err}{self.out}")
        return self.out


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    show: bool = False,
) -> Result:
    """Run ``argv`` to its end (``subprocess.TimeoutExpired`` after ``timeout`` seconds). ``env``: variables
    added to this process's own. ``show``: the output goes to this process's own as it comes (the progress
    of a long command) instead of into the result."""
    environment = dict(os.environ, **env) if env else None
    done = subprocess.run(
        list(argv), input=stdin, capture_output=not show, text=True, timeout=timeout, env=environment, check=False
    )
    return Result(done.returncode, done.stdout or "", done.stderr or "")


def stop(process: subprocess.Popen[str] | subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout`` seconds; waits for its end."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
