"""The ``kubelab_files`` action (playbooks/action_plugins) in a real ansible-playbook run over Ansible's
``local`` connection, into a temporary directory: files and trees land with their modes, a second run
changes nothing, a changed or missing file is written again and only it, a file a pruned tree no
longer has is removed, check mode writes nothing, and a file it cannot write is one error naming it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from provisioner.drivers.libvirt.playbooks import PlaybookError, run_playbook
from provisioner.project import PLAYBOOKS

pytestmark = pytest.mark.integration

PLAYBOOK = """\
- name: Files
  hosts: all
  gather_facts: false
  tasks:
    - name: Files | install a file, a copy and a tree
      kubelab_files:
        files:
          - {dest: "{{ out }}/etc/a.conf", content: "{{ content }}"}
          - {dest: "{{ out }}/etc/secret.key", src: "{{ source }}/secret.key", mode: "0600"}
        trees:
          - {src: "{{ source }}/tree", dest: "{{ out }}/lib/tree", prune: true}
      register: installed
    - name: Files | record what the task reported
      ansible.builtin.copy:
        content: "{{ {'changed': installed.changed, 'files': installed.files} | to_json }}"
        dest: "{{ report }}"
        mode: "0644"
"""


class Node:
    """A playbook run against this machine: ``out`` stands for the node's root."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.out = tmp_path / "node"
        self.source = tmp_path / "source"
        (self.source / "tree" / "pkg").mkdir(parents=True)
        (self.source / "secret.key").write_text("key\n")
        (self.source / "tree" / "pkg" / "mod.py").write_text("x = 1\n")
        (self.source / "tree" / "top.py").write_text("y = 2\n")
        (tmp_path / "action_plugins").symlink_to(PLAYBOOKS / "action_plugins")
        self.runs = 0

    def run(self, content: str = "one\n", *, check: bool = False) -> dict[str, object]:
        self.runs += 1
        report = self.root / f"report-{self.runs}.json"
        inventory = self.root / "inventory.yml"
        inventory.write_text(
            "all:\n  hosts:\n    node1:\n"
            f"      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n"
            f"      out: {self.out}\n      source: {self.source}\n      report: {report}\n"
            f"      content: {json.dumps(content)}\n"
        )
        play = self.root / "play.yml"
        if check:  # the report itself is written for real
            play.write_text(PLAYBOOK.replace("register: installed", "register: installed\n      check_mode: true"))
        else:
            play.write_text(PLAYBOOK)
        run_playbook(inventory, state_dir=self.root / "state", say=lambda _line: None, playbook=play)
        loaded: dict[str, object] = json.loads(report.read_text())
        return loaded


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_files_land_once_with_their_modes_and_only_what_differs_is_written_again(tmp_path: Path) -> None:
    node = Node(tmp_path)
    out = node.out
    first = node.run()
    wanted = [f"{out}/etc/a.conf", f"{out}/etc/secret.key", f"{out}/lib/tree/pkg/mod.py", f"{out}/lib/tree/top.py"]
    assert first == {"changed": True, "files": wanted}
    assert (out / "etc" / "a.conf").read_text() == "one\n"
    assert (_mode(out / "etc" / "a.conf"), _mode(out / "etc" / "secret.key")) == (0o644, 0o600)
    assert (out / "lib" / "tree" / "pkg" / "mod.py").read_text() == "x = 1\n"

    assert node.run() == {"changed": False, "files": []}

    (out / "etc" / "secret.key").chmod(0o644)  # a mode that drifted
    (out / "lib" / "tree" / "top.py").unlink()  # a file that went missing
    (out / "lib" / "tree" / "pkg" / "stale.py").write_text("gone = True\n")  # one the tree no longer has
    again = node.run("two\n")
    assert again == {
        "changed": True,
        "files": [
            f"{out}/etc/a.conf",
            f"{out}/etc/secret.key",
            f"{out}/lib/tree/top.py",
            f"-{out}/lib/tree/pkg/stale.py",
        ],
    }
    assert (out / "etc" / "a.conf").read_text() == "two\n"
    assert _mode(out / "etc" / "secret.key") == 0o600
    assert not (out / "lib" / "tree" / "pkg" / "stale.py").exists()
    assert not list(out.rglob("*.kubelab-*"))  # no temporary file left behind


def test_check_mode_reports_what_would_change_and_writes_nothing(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.run()
    (node.out / "lib" / "tree" / "extra.py").write_text("")
    reported = node.run("three\n", check=True)
    assert reported == {"changed": True, "files": [f"{node.out}/etc/a.conf", f"-{node.out}/lib/tree/extra.py"]}
    assert (node.out / "etc" / "a.conf").read_text() == "one\n"
    assert (node.out / "lib" / "tree" / "extra.py").exists()


def test_a_file_that_cannot_be_written_is_one_error_naming_it(tmp_path: Path) -> None:
    node = Node(tmp_path)
    (node.out / "etc").mkdir(parents=True)
    (node.out / "etc" / "a.conf").mkdir()  # a directory where the file goes
    with pytest.raises(PlaybookError) as caught:
        node.run()
    assert caught.value.task == "Files | install a file, a copy and a tree"
    assert "kubelab_files: installing the files failed: kubelab_files: [Errno 21] Is a directory" in caught.value.detail
    assert f"{node.out}/etc/a.conf" in caught.value.detail
