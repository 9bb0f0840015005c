"""The documentation of the kubelab_files action (playbooks/action_plugins/kubelab_files.py).

The work happens in the action plugin on the controller; this module exists so that Ansible and
ansible-lint know the task name and its options, as Ansible's own action-backed modules do.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kubelab_files
short_description: Put a set of files on a node in one transfer, writing only those that differ
description:
  - Renders nothing itself; takes file contents (e.g. from the template lookup) and controller files,
    sends them in one bundle and installs on the node, with one short python3 program, the files whose
    content or mode differs. Changed when any file was written or removed.
options:
  files:
    description: Files to put, each with dest, and content or src, and mode (default 0644).
    type: list
    elements: dict
  trees:
    description:
      - Controller directories (src) to put under dest.
      - With prune, files under dest that the tree lacks are removed.
    type: list
    elements: dict
"""

RETURN = r"""
files:
  description: The paths written (and, prefixed with '-', removed).
  type: list
  elements: str
  returned: always
"""

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"failed": True, "msg": "kubelab_files runs as an action plugin on the controller"}))
    sys.exit(1)
