"""``run_playbook`` drives the real ansible-runner and ansible-playbook: progress lines come from the
run's events, a failed task becomes one PlaybookError line, a run that changes nothing says so.

The playbooks here are small ones written for the test (never playbooks/site.yml, which would
configure this machine), run against this machine over Ansible's ``local`` connection: they only
write under the test's temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from provisioner.drivers.libvirt.playbooks import PlaybookError, run_playbook

pytestmark = pytest.mark.integration

PLAYBOOK = """\
- name: Try
  hosts: all
  gather_facts: false
  tasks:
    - name: Try | write a file
      ansible.builtin.copy:
        content: "hello\\n"
        dest: "{{ target }}"
        mode: "0644"
    - name: Try | install something
      when: fail_here | default(false)
      block:
        - name: Try | a command that fails
          ansible.builtin.command:
            argv: [sh, -c, 'echo "first line" >&2; echo "ERROR: it broke" >&2; exit 3']
          changed_when: false
      rescue:
        - name: Try | report the failure
          ansible.builtin.fail:
            msg: "could not install: {{ ansible_failed_result.stderr | split('\\n') | last }}"
"""


def _lab(tmp_path: Path, *, fail: bool) -> tuple[Path, Path]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    node1:\n"
        f"      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n"
        f"      target: {tmp_path / 'out' / 'hello.txt'}\n      fail_here: {str(fail).lower()}\n"
    )
    (tmp_path / "out").mkdir(exist_ok=True)
    return playbook, inventory


def test_a_run_reports_its_tasks_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    playbook, inventory = _lab(tmp_path, fail=False)
    lines: list[str] = []
    first = run_playbook(inventory, state_dir=tmp_path / "state", say=lines.append, playbook=playbook)
    assert first.changed == {"node1": 1}
    assert (tmp_path / "out" / "hello.txt").read_text() == "hello\n"
    assert any(line.endswith("play: Try") for line in lines)
    assert any(line.endswith("   Try | write a file") for line in lines)
    assert lines[-1].endswith("1 hosts; tasks that changed something: node1 1")
    assert (first.artifacts / "stdout").exists()
    assert str(first.artifacts).startswith(str(tmp_path / "state" / "ansible"))
    second = run_playbook(inventory, state_dir=tmp_path / "state", say=lambda _line: None, playbook=playbook)
    assert second.changed_total == 0


def test_a_failed_task_is_one_error_line_with_the_host_the_task_and_the_message(tmp_path: Path) -> None:
    playbook, inventory = _lab(tmp_path, fail=True)
    lines: list[str] = []
    with pytest.raises(PlaybookError) as caught:
        run_playbook(inventory, state_dir=tmp_path / "state", say=lines.append, playbook=playbook)
    error = caught.value
    assert (error.host, error.task) == ("node1", "Try | report the failure")  # not the rescued one
    assert error.detail == "could not install: ERROR: it broke"
    assert str(error).startswith(
        "ansible: node1: 'Try | report the failure' failed: could not install: ERROR: it broke;"
    )
    assert "\n" not in str(error)
    assert any("'Try | a command that fails' failed: exit code 3: ERROR: it broke" in line for line in lines)


def test_a_playbook_that_does_not_parse_is_one_error_line(tmp_path: Path) -> None:
    playbook, inventory = _lab(tmp_path, fail=False)
    playbook.write_text("- name: Broken\n  hosts: all\n  tasks:\n    - name: No module\n      nonsense_key: 1\n")
    with pytest.raises(PlaybookError) as caught:
        run_playbook(inventory, state_dir=tmp_path / "state", say=lambda _line: None, playbook=playbook)
    assert str(caught.value).startswith("ansible-playbook failed: [ERROR]: ")
    assert "\n" not in str(caught.value)
