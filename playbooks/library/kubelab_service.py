"""The documentation of the kubelab_service action (playbooks/action_plugins/kubelab_service.py).

The work happens in the action plugin on the controller; this module exists so that Ansible and
ansible-lint know the task name and its options, as Ansible's own action-backed modules do.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kubelab_service
short_description: Name a service the node runs, or one that must restart, for the services role
description:
  - Sets facts only, on the controller; the services role enables, starts and restarts the units
    they name in one step and waits until each is ready.
options:
  unit:
    description: The systemd unit.
    type: str
    required: true
  ready:
    description: An http(s) URL that answers with success once the service is ready.
    type: str
  cacert:
    description: The CA file that verifies an https ready URL.
    type: path
  timeout:
    description: Seconds the service may take to become ready.
    type: int
    default: 300
  restart:
    description: The unit's files changed and it must restart (used in handlers).
    type: bool
    default: false
"""

RETURN = r"""
ansible_facts:
  description: kubelab_services (units with their readiness check) and kubelab_restart (units).
  type: dict
  returned: always
"""

if __name__ == "__main__":
    import json
    import sys

    print(json.dumps({"failed": True, "msg": "kubelab_service runs as an action plugin on the controller"}))
    sys.exit(1)
