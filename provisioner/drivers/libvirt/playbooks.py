"""Configuring the lab's VMs with Ansible: running the playbooks (``inventory`` writes what they read).

``run_playbook`` runs ``playbooks/site.yml`` through ansible-runner and turns Ansible's events into
progress: one line per play and task with the seconds elapsed, one line per host that fails, and a
summary. A run that fails raises ``PlaybookError``: one line naming the host, the task and the
module's message, and where the whole output is. The mapping from events to lines and failures is
pure (``progress_line``, ``failure_of``, ``module_message``), so it is tested without Ansible.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner.drivers.libvirt.inventory import hosts_of
from provisioner.errors import ProvisionError
from provisioner.project import PLAYBOOKS
from provisioner.system.waiting import Heartbeat

SITE = PLAYBOOKS / "site.yml"

MESSAGE_LIMIT = 400  # characters of a module's message in a progress line or an error


class PlaybookError(ProvisionError):
    """A task failed on a host (or the playbooks did not run); the message is one line."""

    def __init__(self, message: str, *, host: str = "", task: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.host = host
        self.task = task
        self.detail = detail


# --- events -> progress --------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False

    def line(self) -> str:
        what = "unreachable" if self.unreachable else "failed"
        return f"{self.host}: {self.task!r} {what}: {self.message}"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "..."


def module_message(result: Mapping[str, Any]) -> str:
    """What a failed module said, on one line: its ``msg``, with the last line of a command's
    stderr (or stdout); for a loop, the first item that failed."""
    items = result.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and (item.get("failed") or item.get("unreachable")):
                label = item.get("_ansible_item_label", item.get("item"))
                inner = module_message(item)
                return _one_line(f"item {label}: {inner}") if label is not None else inner
    message = str(result.get("msg") or "").removeprefix("Task failed: ").strip()
    output = next(
        (str(result[key]).strip() for key in ("stderr", "stdout") if str(result.get(key) or "").strip()),
        "",
    )
    if output:
        last = output.splitlines()[-1].strip()
        rc = result.get("rc")
        if message in ("", "non-zero return code") and rc is not None:
            message = f"exit code {rc}"
        message = f"{message}: {last}" if message else last
    return _one_line(message or "failed without a message")


def failure_of(event: Mapping[str, Any]) -> TaskFailure | None:
    """The failure an event reports (a failed task on a host, or a host out of reach); None for any
    other event, and for failures the task ignores (``ignore_errors``)."""
    kind = event.get("event")
    if kind not in ("runner_on_failed", "runner_on_unreachable"):
        return None
    data = event.get("event_data") or {}
    if data.get("ignore_errors"):
        return None
    return TaskFailure(
        host=str(data.get("host") or "?"),
        task=str(data.get("task") or "?"),
        message=module_message(data.get("res") or {}),
        unreachable=kind == "runner_on_unreachable",
    )


def progress_line(event: Mapping[str, Any], elapsed: float) -> str | None:
    """The line a user sees for an event ``elapsed`` seconds into the run, or None."""
    data = event.get("event_data") or {}
    stamp = f"[{elapsed:6.1f}s]"
    kind = event.get("event")
    if kind == "playbook_on_play_start":
        return f"{stamp} play: {data.get('play') or data.get('name') or '?'}"
    if kind == "playbook_on_task_start":
        return f"{stamp}   {data.get('task') or data.get('name') or '?'}"
    if kind == "playbook_on_handler_task_start":
        return f"{stamp}   handler: {data.get('task') or data.get('name') or '?'}"
    failure = failure_of(event)
    if failure is not None:
        return f"{stamp}   {failure.line()}"
    return None


def stats_line(stats: Mapping[str, Any], elapsed: float) -> str:
    """The summary of a run: what changed on each host."""
    processed = sorted((stats.get("processed") or {}).keys())
    changed = stats.get("changed") or {}
    per_host = ", ".join(f"{host} {changed.get(host, 0)}" for host in processed)
    return f"[{elapsed:6.1f}s] {len(processed)} hosts; tasks that changed something: {per_host or 'none'}"


@dataclass
class _Progress:
    """Follows a run's events: says the progress lines and keeps each host's last failure."""

    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    failures: dict[str, TaskFailure] = field(default_factory=dict)  # by host, in the order they ended
    doing: str = "starting ansible-playbook"  # the task under way, for the heartbeat between events

    def event(self, event: Mapping[str, Any]) -> bool:
        elapsed = time.monotonic() - self.started
        line = progress_line(event, elapsed)
        if line is not None:
            self.say(line)
        data = event.get("event_data") or {}
        if event.get("event") in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            self.doing = f"task {data.get('task') or data.get('name') or '?'!r} since {elapsed:.0f}s"
        failure = failure_of(event)
        if failure is not None:
            # a host's last failure is what ended it there (one before it may have been rescued)
            self.failures.pop(failure.host, None)
            self.failures[failure.host] = failure
        return True  # ansible-runner keeps the event in the artifacts


def run_error(failures: Mapping[str, TaskFailure], *, stats: Mapping[str, Any], output: Path) -> PlaybookError:
    """The error of a failed run: the first host that failed (rescued failures left out)."""
    failed_hosts = set(stats.get("failures") or {}) | set(stats.get("dark") or {})
    final = [f for host, f in failures.items() if host in failed_hosts] or list(failures.values())
    if not final:
        return PlaybookError(f"ansible-playbook failed before any task ran; see {output}")
    first = final[0]
    more = f" ({len(final) - 1} more hosts failed)" if len(final) > 1 else ""
    return PlaybookError(
        f"ansible: {first.line()}{more}; the whole output is in {output}",
        host=first.host,
        task=first.task,
        detail=first.message,
    )


# --- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaybookResult:
    seconds: float
    changed: Mapping[str, int]  # host -> tasks that reported a change
    artifacts: Path  # ansible-runner's directory of this run (stdout, job_events/)

    @property
    def changed_total(self) -> int:
        return sum(self.changed.values())


def runner_environment(*, bin_dir: Path) -> dict[str, str]:
    """The environment of ansible-playbook: pipelining and persistent ssh connections (one ssh
    connection per host for the whole run), plain text output."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s",
        "ANSIBLE_NOCOLOR": "1",
    }


def run_playbook(
    inventory_file: Path,
    *,
    state_dir: Path,
    say: Callable[[str], None],
    playbook: Path = SITE,
    tags: Sequence[str] = (),
    limit: str = "",
    timeout: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> PlaybookResult:
    """Run ``playbook`` against the hosts of ``inventory_file``, all at once (forks = hosts), with
    ansible-runner's files under ``state_dir/ansible``; raise PlaybookError if it fails. ``labels``
    (the lab's identity) go into ansible-playbook's environment, where the lab finds it again."""
    import ansible_runner  # noqa: PLC0415  (slow to import; only the VM lab needs it)

    bin_dir = Path(sys.executable).parent
    environment = {**runner_environment(bin_dir=bin_dir), **(labels or {})}
    if shutil.which("ansible-playbook", path=environment["PATH"]) is None:
        raise PlaybookError(
            "ansible-playbook is not installed; run ./kubelab, which installs the project's dependencies"
        )
    try:
        hosts = hosts_of(inventory_file.read_text())
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise PlaybookError(f"cannot read the inventory {inventory_file}: {exc}") from exc
    private = state_dir / "ansible"
    private.mkdir(parents=True, exist_ok=True)
    progress = _Progress(say)
    with Heartbeat("ansible-playbook", say, last=lambda: progress.doing) as beat:
        progress.say = beat.say  # a task's own lines keep the heartbeat quiet
        runner = ansible_runner.run(
            private_data_dir=str(private),
            playbook=str(playbook),
            inventory=str(inventory_file),
            forks=max(1, len(hosts)),
            envvars=environment,
            tags=",".join(tags) or None,
            limit=limit or None,
            timeout=timeout,
            quiet=True,
            suppress_env_files=True,
            rotate_artifacts=5,
            event_handler=progress.event,
        )
    elapsed = time.monotonic() - progress.started
    artifacts = Path(runner.config.artifact_dir)
    stats: Mapping[str, Any] = runner.stats or {}
    if stats:
        say(stats_line(stats, elapsed))
    if runner.status == "timeout":
        raise PlaybookError(f"ansible: the playbooks did not finish within {timeout} s; see {artifacts / 'stdout'}")
    if runner.status != "successful":
        error = run_error(progress.failures, stats=stats, output=artifacts / "stdout")
        if not error.host:
            said = error_line(artifacts / "stdout")
            if said:
                error = PlaybookError(f"ansible-playbook failed: {said}; see {artifacts / 'stdout'}")
        raise error
    return PlaybookResult(seconds=elapsed, changed=dict(stats.get("changed") or {}), artifacts=artifacts)


def error_line(output: Path) -> str:
    """The line of ansible-playbook's output that says what went wrong before any task ran (a
    playbook that does not parse, an inventory it cannot read): its first error line, else its last."""
    try:
        lines = [line.strip() for line in output.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    said = next((line for line in lines if line.startswith(("[ERROR]", "ERROR!"))), lines[-1] if lines else "")
    return _one_line(said)
