"""kubelab_files: put a set of files on a node in one transfer, writing only those that differ.

Why it exists: on a software-emulated (TCG) guest every Python module Ansible runs costs seconds of
CPU (its payload is unpacked and compiled each time), and every process a few tens of milliseconds,
so a role of twenty ``template``/``copy`` tasks spends minutes per node before anything starts. This
action works on the controller: the files are rendered or read on the controller and packed into one
bundle, sent on the standard input of one command over the task's connection (one round trip), and one
short Python program on the node (``python3 -I -S``: no site packages, no Ansible, a fraction of a
second) installs the files whose content or mode differs, each replaced atomically, and prints them.
The task is ``changed`` when any file was written or removed, so handlers restart only what a change
concerns, and a second run changes nothing.

Options:
  files: list of {dest, content | src, mode (default "0644")}; ``content`` is text (use
         ``lookup('ansible.builtin.template', ...)`` to render a template), ``src`` a controller file
  trees: list of {src, dest, prune (default false)}: every file under the controller directory
         ``src`` lands under ``dest`` (mode 0644); with ``prune``, files under ``dest`` that the tree
         no longer has are removed
Returns: changed, files (the paths written or removed, ``-`` in front of removed ones).
Check mode reports what would change and writes nothing.
"""

from __future__ import annotations

import io
import os
import shlex
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# Runs on the node as: python3 -I -S -c SCRIPT CHECK(0|1), reading on its standard input a bundle of
# records: "F <mode, octal> <size> <path>\n" followed by the file's bytes, "P <directory>\n" for a tree
# to prune, "E\n" at the end (paths relative to /). One process whatever the number of files, and one
# that imports nothing but os and sys: process creation and imports are what cost on an emulated
# guest (the shell pipeline this replaces started about fifteen processes, a second of CPU a task).
SCRIPT = r"""
import os, sys

def install(check):
    stream = sys.stdin.buffer
    wanted, prunes = set(), []
    while True:
        line = stream.readline()
        if not line:
            raise ValueError("the bundle ended early")
        kind, _, rest = line.rstrip(b"\n").partition(b" ")
        if kind == b"E":
            break
        if kind == b"P":
            prunes.append("/" + rest.decode())
            continue
        mode, size, name = rest.split(b" ", 2)
        data = stream.read(int(size))
        path, mode = "/" + name.decode(), int(mode, 8)
        wanted.add(path)
        try:
            with open(path, "rb") as current:
                same = current.read() == data and os.fstat(current.fileno()).st_mode & 0o7777 == mode
        except FileNotFoundError:
            same = False
        if same:
            continue
        print(path)
        if check:
            continue
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        temporary = f"{path}.kubelab-{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    for top in prunes:
        for directory, _, names in os.walk(top):
            for name in sorted(names):
                path = os.path.join(directory, name)
                if path not in wanted:
                    print("-" + path)
                    if not check:
                        os.remove(path)

try:
    install(sys.argv[1] == "1")
except (OSError, ValueError) as exc:
    sys.exit(f"kubelab_files: {exc}")
"""


def _relative(dest: str) -> str:
    path = os.path.normpath(dest)
    if not path.startswith("/") or path == "/" or "\n" in path:
        raise AnsibleActionFail(f"kubelab_files: dest {dest!r} must be an absolute file path")
    return path.lstrip("/")


def _mode(value: Any) -> str:
    text = str(value if value is not None else "0644")
    if not text.isdigit() or len(text) not in (3, 4) or any(c > "7" for c in text):
        raise AnsibleActionFail(f"kubelab_files: mode {text!r} must be octal digits, e.g. '0644'")
    return text if len(text) == 4 else "0" + text


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files", "trees"))

    def _entries(self) -> list[tuple[str, bytes, str]]:
        """(path relative to /, content, mode) of every file the task puts on the node."""
        out: dict[str, tuple[bytes, str]] = {}
        for item in self._task.args.get("files") or []:
            if not isinstance(item, dict) or "dest" not in item or ("content" in item) == ("src" in item):
                raise AnsibleActionFail("kubelab_files: each of files needs dest and one of content or src")
            if "content" in item:
                data = str(item["content"]).encode()
            else:
                try:
                    data = Path(str(item["src"])).read_bytes()
                except OSError as exc:
                    raise AnsibleActionFail(f"kubelab_files: cannot read {item['src']}: {exc.strerror}") from exc
            out[_relative(str(item["dest"]))] = (data, _mode(item.get("mode")))
        for tree in self._task.args.get("trees") or []:
            source = Path(str(tree.get("src", "")))
            if not source.is_dir():
                raise AnsibleActionFail(f"kubelab_files: tree {source} is not a directory on the controller")
            base = _relative(str(tree.get("dest", "")))
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    out[f"{base}/{path.relative_to(source).as_posix()}"] = (
                        path.read_bytes(),
                        "0644",
                    )
        return [(path, data, mode) for path, (data, mode) in sorted(out.items())]

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        entries = self._entries()
        prunes = [_relative(str(t["dest"])) for t in self._task.args.get("trees") or [] if bool(t.get("prune", False))]
        bundle = io.BytesIO()
        for path, data, mode in entries:
            bundle.write(f"F {mode} {len(data)} {path}\n".encode())
            bundle.write(data)
        bundle.write("".join(f"P {path}\n" for path in prunes).encode() + b"E\n")
        check = "1" if self._task.check_mode else "0"
        # one round trip: the bundle travels on the command's standard input
        done = self._low_level_execute_command(
            f"python3 -I -S -c {shlex.quote(SCRIPT)} {check}",
            sudoable=True,
            in_data=bundle.getvalue(),
        )
        if done.get("rc", 1) != 0:
            detail = str(done.get("stderr") or done.get("stdout") or "").strip()
            raise AnsibleActionFail(f"kubelab_files: installing the files failed: {detail}")
        changed = [line for line in str(done.get("stdout", "")).splitlines() if line.strip()]
        result.update(changed=bool(changed), files=changed)
        return result
