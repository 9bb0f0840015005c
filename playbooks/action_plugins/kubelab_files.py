"""kubelab_files: put a set of files on a node in one transfer, writing only those that differ.

Why it exists: on a software-emulated (TCG) guest every Python module Ansible runs costs seconds of
CPU (its payload is unpacked and compiled each time), so a role of twenty ``template``/``copy`` tasks
spends minutes per node before anything starts. This action works on the controller and needs no
Python on the node: the files are rendered or read on the controller, packed into one tar with a
sha256 manifest, sent on the standard input of one command over the task's connection (one round
trip), and a short POSIX shell script on the node
installs the files whose content or mode differs (``sha256sum -c`` does the comparing in one
process) and prints them. The task is ``changed`` when any file was written or removed, so handlers
restart only what a change concerns, and a second run changes nothing.

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

import hashlib
import io
import os
import shlex
import tarfile
import time
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# Runs on the node as: sh -c SCRIPT kubelab-files CHECK(0|1), reading on its standard input a tar
# holding files/<path> for every file (with its mode) and meta/sums (sha256sum format, paths relative
# to /), meta/modes ("MODE PATH" lines) and meta/prunes (one directory per line). A handful of
# processes whatever the number of files: process creation is what costs on an emulated guest.
SCRIPT = r"""
set -eu
check=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
cat >bundle.tar
tar -xf bundle.tar meta
cut -d' ' -f2- meta/modes | sort >wanted
# what differs in content (or is missing), and the modes of what exists, each in one process
(cd / && sha256sum -c "$tmp/meta/sums" 2>/dev/null || true) | sed -n 's/: FAILED.*$//p' >differ
(cd / && xargs -r stat -c '%a %n' <"$tmp/wanted" 2>/dev/null || true) >current
awk 'FILENAME == "differ" { d[$0] = 1; next }
     FILENAME == "current" { m[$2] = $1; next }
     { mode = $1; sub(/^0/, "", mode); if (($2 in d) || m[$2] != mode) print $2 }' differ current meta/modes >write
sed 's,^,/,' write
if [ "$check" = 0 ] && [ -s write ]; then
    # tar writes each file with the mode it carries, creating missing directories
    sed 's,^,files/,' write >members
    tar -xpf bundle.tar -C / --strip-components=1 --no-same-owner -T members
fi
while read -r dir; do
    [ -d "/$dir" ] || continue
    (cd / && find "$dir" -type f) | sort | comm -23 - wanted >gone
    sed 's,^,-/,' gone
    if [ "$check" = 0 ] && [ -s gone ]; then (cd / && xargs rm -f <"$tmp/gone"); fi
done <meta/prunes
"""


def _relative(dest: str) -> str:
    path = os.path.normpath(dest)
    if not path.startswith("/") or path == "/":
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
        sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data, _ in entries)
        modes = "".join(f"{mode} {path}\n" for path, _, mode in entries)
        now = time.time()
        bundle = io.BytesIO()
        with tarfile.open(fileobj=bundle, mode="w") as tar:
            for name, data, mode in (
                *((f"files/{path}", data, mode) for path, data, mode in entries),
                ("meta/sums", sums.encode(), "0600"),
                ("meta/modes", modes.encode(), "0600"),
                ("meta/prunes", "".join(f"{p}\n" for p in prunes).encode(), "0600"),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = int(mode, 8)
                info.mtime = int(now)
                tar.addfile(info, io.BytesIO(data))
        check = "1" if self._task.check_mode else "0"
        # one round trip: the tar travels on the command's standard input
        done = self._low_level_execute_command(
            f"sh -c {shlex.quote(SCRIPT)} kubelab-files {check}",
            sudoable=True,
            in_data=bundle.getvalue(),
        )
        if done.get("rc", 1) != 0:
            detail = str(done.get("stderr") or done.get("stdout") or "").strip()
            raise AnsibleActionFail(f"kubelab_files: installing the files failed: {detail}")
        changed = [line for line in str(done.get("stdout", "")).splitlines() if line.strip()]
        result.update(changed=bool(changed), files=changed)
        return result
