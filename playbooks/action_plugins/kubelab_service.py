"""kubelab_service: name a service this node runs, or one whose files changed, for the services role.

The roles only install files; which services a node runs, how to tell each is ready and which must
restart are facts the ``services`` role then acts on in one step (one daemon-reload, one systemctl
call that starts everything together). This action runs on the controller only and touches nothing
on the node, so it costs no guest time.

Options:
  unit:    the systemd unit (required)
  ready:   an http(s) URL that answers with success once the service is ready (default: none to wait for)
  cacert:  the CA file that verifies an https ``ready`` URL
  cert, key: a client certificate and its key for an https ``ready`` URL that asks for one (etcd)
  timeout: seconds the service may take to become ready (default 300)
  restart: true in a handler: the unit's files changed and it must restart (default false)
Facts: kubelab_services (list of {unit, ready, cacert, cert, key, timeout}, in the order named; naming a unit again
replaces its entry) and kubelab_restart (list of units).
"""

from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

_UNIT = re.compile(r"^[A-Za-z0-9@._:-]+\.(service|socket|target|timer|path|mount)$")


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("unit", "ready", "cacert", "cert", "key", "timeout", "restart"))

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        known = task_vars or {}
        args = self._task.args
        unit = str(args.get("unit") or "")
        if not _UNIT.match(unit):
            raise AnsibleActionFail(f"kubelab_service: unit {unit!r} is not a systemd unit name like 'etcd.service'")
        if boolean(args.get("restart", False), strict=False):
            restart = [str(u) for u in known.get("kubelab_restart") or []]
            facts: dict[str, Any] = {"kubelab_restart": [*restart, unit] if unit not in restart else restart}
        else:
            try:
                timeout = int(args.get("timeout", 300))
            except (TypeError, ValueError) as exc:
                raise AnsibleActionFail(f"kubelab_service: timeout {args.get('timeout')!r} is not seconds") from exc
            ready = str(args.get("ready") or "")
            if ready and not ready.startswith(("http://", "https://")):
                raise AnsibleActionFail(f"kubelab_service: ready {ready!r} is not an http:// or https:// URL")
            cert, key = str(args.get("cert") or ""), str(args.get("key") or "")
            if bool(cert) != bool(key):
                raise AnsibleActionFail("kubelab_service: cert and key go together (a client certificate and its key)")
            entry = {
                "unit": unit,
                "ready": ready,
                "cacert": str(args.get("cacert") or ""),
                "cert": cert,
                "key": key,
                "timeout": timeout,
            }
            services = [dict(s) for s in known.get("kubelab_services") or [] if s.get("unit") != unit]
            facts = {"kubelab_services": [*services, entry]}
        result.update(changed=False, ansible_facts=facts)
        return result
