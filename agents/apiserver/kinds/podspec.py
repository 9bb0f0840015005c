"""Pod specs: the defaults and validation shared by Pods and every pod template."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.status import FieldError, forbidden, invalid, required
from agents.apiserver.validation import Errors
from agents.machinery import quantity
from agents.machinery.selectors import SelectorError, from_structured

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
VOLUME_SOURCES = (
    "emptyDir",
    "hostPath",
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "persistentVolumeClaim",
    "nfs",
    "iscsi",
    "ephemeral",
    "csi",
    "image",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


# --- defaults ------------------------------------------------------------------------------------


def default_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: dict[str, Any] | None) -> None:
    if not probe:
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if "httpGet" in probe:
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(c: dict[str, Any]) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c and isinstance(c.get("image"), str):
        c["imagePullPolicy"] = default_pull_policy(c["image"])
    resources = c.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, amount in limits.items():
            requests.setdefault(name, amount)
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(name))


def _default_volume(vol: dict[str, Any]) -> None:
    for source in ("configMap", "secret", "downwardAPI", "projected"):
        if source in vol and isinstance(vol[source], dict):
            vol[source].setdefault("defaultMode", 420)
    if isinstance(vol.get("hostPath"), dict):
        vol["hostPath"].setdefault("type", "")


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for c in spec.get("containers") or []:
        _default_container(c)
    for c in spec.get("initContainers") or []:
        _default_container(c)
    for c in spec.get("ephemeralContainers") or []:
        _default_container(c)
    for vol in spec.get("volumes") or []:
        _default_volume(vol)
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' requests and limits."""
    requests: dict[str, int] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        res = c.get("resources") or {}
        req = {k: quantity.milli(q) for k, q in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: quantity.milli(q) for k, q in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        for k, amount in req.items():
            if amount:
                requests[k] = requests.get(k, 0) + amount
        for k, amount in lim.items():
            if amount:
                limits[k] = limits.get(k, 0) + amount
        if set(lim) != {"cpu", "memory"} or any(req.get(k, lim[k]) != lim[k] for k in lim):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# --- validation ----------------------------------------------------------------------------------


def _probe(path: str, probe: dict[str, Any] | None, *, liveness_like: bool) -> Errors:
    if not probe:
        return []
    out: Errors = []
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
    if not handlers:
        out.append(required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        out.append(forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type"))
    for name in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        out += v.non_negative(f"{path}.{name}", probe.get(name))
    if liveness_like and probe.get("successThreshold", 1) != 1:
        out.append(invalid(f"{path}.successThreshold", probe.get("successThreshold"), "must be 1"))
    if "httpGet" in probe:
        out += v.int_or_name_port(f"{path}.httpGet.port", probe["httpGet"].get("port"))
        out += v.one_of(f"{path}.httpGet.scheme", probe["httpGet"].get("scheme", "HTTP"), ("HTTP", "HTTPS"))
    if "tcpSocket" in probe:
        out += v.int_or_name_port(f"{path}.tcpSocket.port", probe["tcpSocket"].get("port"))
    if "exec" in probe and not (probe["exec"].get("command")):
        out.append(required(f"{path}.exec.command"))
    return out


def _lifecycle(path: str, lifecycle: dict[str, Any] | None, grace: Any) -> Errors:
    """kube's lifecycle handlers: exactly one of exec, httpGet, tcpSocket, sleep; a sleep of more than
    0 seconds and no more than the pod's grace period."""
    out: Errors = []
    for hook in ("postStart", "preStop"):
        handler = (lifecycle or {}).get(hook)
        if handler is None:
            continue
        here = f"{path}.{hook}"
        handlers = [h for h in ("exec", "httpGet", "tcpSocket", "sleep") if handler.get(h) is not None]
        if not handlers:
            out.append(required(here, "must specify a handler type"))
        elif len(handlers) > 1:
            out.append(forbidden(f"{here}.{handlers[1]}", "may not specify more than 1 handler type"))
        if handler.get("exec") is not None and not handler["exec"].get("command"):
            out.append(required(f"{here}.exec.command"))
        if handler.get("httpGet") is not None:
            out += v.int_or_name_port(f"{here}.httpGet.port", handler["httpGet"].get("port"))
            out += v.one_of(f"{here}.httpGet.scheme", handler["httpGet"].get("scheme", "HTTP"), ("HTTP", "HTTPS"))
        if handler.get("tcpSocket") is not None:
            out += v.int_or_name_port(f"{here}.tcpSocket.port", handler["tcpSocket"].get("port"))
        if handler.get("sleep") is not None:
            seconds = handler["sleep"].get("seconds")
            if isinstance(grace, int) and (not isinstance(seconds, int) or seconds <= 0 or seconds > grace):
                message = f"must be greater than 0 and less than terminationGracePeriodSeconds ({grace})"
                out.append(invalid(f"{here}.sleep", seconds, message))
    return out


def _init_container(path: str, c: dict[str, Any]) -> Errors:
    """An init container's restartPolicy may only be Always (a sidecar); one without it runs to its
    end, so it may have neither probes nor lifecycle hooks."""
    if "restartPolicy" in c and c["restartPolicy"] is not None:
        return v.one_of(f"{path}.restartPolicy", c["restartPolicy"], ("Always",))
    return [
        forbidden(f"{path}.{name}", "may not be set for init containers without restartPolicy=Always")
        for name in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe")
        if c.get(name) is not None
    ]


def _env(path: str, env: list[dict[str, Any]]) -> Errors:
    out: Errors = []
    for i, var in enumerate(env):
        here = f"{path}[{i}]"
        name = var.get("name", "")
        if not name:
            out.append(required(f"{here}.name"))
        elif "=" in name or not name.isprintable() or not name.isascii():
            out.append(
                invalid(
                    f"{here}.name",
                    name,
                    "a valid environment variable name must consist only of printable ASCII characters other than '='",
                )
            )
        source = var.get("valueFrom")
        if source is not None:
            if var.get("value"):
                out.append(invalid(f"{here}.valueFrom", "", "may not be specified when `value` is not empty"))
            kinds = [
                k
                for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")
                if source.get(k) is not None
            ]
            if len(kinds) != 1:
                out.append(
                    invalid(
                        f"{here}.valueFrom",
                        "",
                        "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                    )
                )
            for ref in ("configMapKeyRef", "secretKeyRef"):
                if ref in source and not source[ref].get("key"):
                    out.append(required(f"{here}.valueFrom.{ref}.key"))
            if "fieldRef" in source and not source["fieldRef"].get("fieldPath"):
                out.append(required(f"{here}.valueFrom.fieldRef.fieldPath"))
    return out


def _container(path: str, c: dict[str, Any], volumes: set[str]) -> Errors:
    out: Errors = []
    name = c.get("name", "")
    if not name:
        out.append(required(f"{path}.name"))
    else:
        out += v.name_errors(f"{path}.name", name, v.dns_label)
    if not c.get("image"):
        out.append(required(f"{path}.image"))
    if "imagePullPolicy" in c:
        out += v.one_of(f"{path}.imagePullPolicy", c["imagePullPolicy"], PULL_POLICIES)
    port_names: list[tuple[int, Any]] = []
    for i, port in enumerate(c.get("ports") or []):
        here = f"{path}.ports[{i}]"
        out += v.port_number(f"{here}.containerPort", port.get("containerPort"))
        if port.get("hostPort"):
            out += v.port_number(f"{here}.hostPort", port.get("hostPort"))
        out += v.protocol(f"{here}.protocol", port.get("protocol", "TCP"))
        if port.get("name"):
            out += v.port_name(f"{here}.name", port["name"])
            port_names.append((i, port["name"]))
    out += v.unique(f"{path}.ports", port_names, "name")
    out += _env(f"{path}.env", c.get("env") or [])
    resources = c.get("resources") or {}
    for kind in ("limits", "requests"):
        for res_name, amount in (resources.get(kind) or {}).items():
            out += v.quantity_value(f"{path}.resources.{kind}[{res_name}]", amount)
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    for res_name, amount in requests.items():
        if res_name in limits:
            try:
                if quantity.milli(amount) > quantity.milli(limits[res_name]):
                    out.append(
                        invalid(
                            f"{path}.resources.requests",
                            amount,
                            f"must be less than or equal to {res_name} limit of {limits[res_name]}",
                        )
                    )
            except quantity.QuantityError:
                pass  # reported above
    mount_paths: list[tuple[int, Any]] = []
    for i, mount in enumerate(c.get("volumeMounts") or []):
        here = f"{path}.volumeMounts[{i}]"
        if not mount.get("name"):
            out.append(required(f"{here}.name"))
        elif mount["name"] not in volumes:
            out.append(FieldError("FieldValueNotFound", f"{here}.name", "", mount["name"], True))
        if not mount.get("mountPath"):
            out.append(required(f"{here}.mountPath"))
        else:
            mount_paths.append((i, mount["mountPath"]))
    seen_paths: set[str] = set()
    for i, mount_path in mount_paths:
        if mount_path in seen_paths:
            out.append(invalid(f"{path}.volumeMounts[{i}].mountPath", mount_path, "must be unique"))
        seen_paths.add(mount_path)
    out += _probe(f"{path}.livenessProbe", c.get("livenessProbe"), liveness_like=True)
    out += _probe(f"{path}.startupProbe", c.get("startupProbe"), liveness_like=True)
    out += _probe(f"{path}.readinessProbe", c.get("readinessProbe"), liveness_like=False)
    return out


def _volumes(path: str, volumes: list[dict[str, Any]]) -> tuple[Errors, set[str]]:
    out: Errors = []
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        here = f"{path}[{i}]"
        name = vol.get("name", "")
        if not name:
            out.append(required(f"{here}.name"))
        else:
            out += v.name_errors(f"{here}.name", name, v.dns_label)
            if name in names:
                out.append(FieldError("FieldValueDuplicate", f"{here}.name", "", name, True))
            names.add(name)
        sources = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
        if not sources:
            out.append(required(here, "must specify a volume type"))
        elif len(sources) > 1:
            out.append(forbidden(f"{here}.{sources[1]}", "may not specify more than 1 volume type"))
        if "hostPath" in vol and not (vol["hostPath"] or {}).get("path"):
            out.append(required(f"{here}.hostPath.path"))
        if "configMap" in vol and not (vol["configMap"] or {}).get("name"):
            out.append(required(f"{here}.configMap.name"))
        if "secret" in vol and not (vol["secret"] or {}).get("secretName"):
            out.append(required(f"{here}.secret.secretName"))
        if "persistentVolumeClaim" in vol and not (vol["persistentVolumeClaim"] or {}).get("claimName"):
            out.append(required(f"{here}.persistentVolumeClaim.claimName"))
        size = (vol.get("emptyDir") or {}).get("sizeLimit")
        if size is not None:
            out += v.quantity_value(f"{here}.emptyDir.sizeLimit", size)
    return out, names


def tolerations(path: str, items: Iterable[dict[str, Any]]) -> Errors:
    out: Errors = []
    for i, tol in enumerate(items):
        here = f"{path}[{i}]"
        op = tol.get("operator", "Equal")
        out += v.one_of(f"{here}.operator", op, ("Equal", "Exists"))
        if tol.get("key"):
            out += v.qualified_name(f"{here}.key", tol["key"])
        elif op != "Exists":
            out.append(
                invalid(
                    f"{here}.operator",
                    op,
                    'operator must be Exists when `key` is empty, which means "match all values and all keys"',
                )
            )
        if op == "Exists" and tol.get("value"):
            out.append(invalid(f"{here}.operator", tol.get("value"), "value must be empty when `operator` is 'Exists'"))
        if tol.get("effect"):
            out += v.one_of(f"{here}.effect", tol["effect"], TAINT_EFFECTS)
        if tol.get("tolerationSeconds") is not None and tol.get("effect") != "NoExecute":
            out.append(
                invalid(
                    f"{here}.effect",
                    tol.get("effect", ""),
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
    return out


def _node_selector_terms(path: str, terms: list[dict[str, Any]]) -> Errors:
    out: Errors = []
    ops = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
    for i, term in enumerate(terms):
        for kind in ("matchExpressions", "matchFields"):
            for j, expr in enumerate(term.get(kind) or []):
                here = f"{path}[{i}].{kind}[{j}]"
                op = expr.get("operator")
                out += v.one_of(f"{here}.operator", op, ops)
                values = expr.get("values") or []
                if op in ("In", "NotIn") and not values:
                    out.append(required(f"{here}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
                if op in ("Gt", "Lt") and len(values) != 1:
                    out.append(
                        required(f"{here}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'")
                    )
    return out


def _affinity(path: str, affinity: dict[str, Any]) -> Errors:
    out: Errors = []
    node = affinity.get("nodeAffinity") or {}
    required_terms = (node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    if required_terms is not None:
        out += _node_selector_terms(
            f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
            required_terms,
        )
    for i, pref in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
        here = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        weight = pref.get("weight", 0)
        if not isinstance(weight, int) or not 1 <= weight <= 100:
            out.append(invalid(f"{here}.weight", weight, "must be in the range 1-100"))
        out += _node_selector_terms(f"{here}.preference", [pref.get("preference") or {}])
    for kind in ("podAffinity", "podAntiAffinity"):
        block = affinity.get(kind) or {}
        for i, term in enumerate(block.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            here = f"{path}.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"
            if not term.get("topologyKey"):
                out.append(required(f"{here}.topologyKey", "can not be empty"))
            out += v.label_selector(f"{here}.labelSelector", term.get("labelSelector"))
        for i, pref in enumerate(block.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            here = f"{path}.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            weight = pref.get("weight", 0)
            if not isinstance(weight, int) or not 1 <= weight <= 100:
                out.append(invalid(f"{here}.weight", weight, "must be in the range 1-100"))
            if not (pref.get("podAffinityTerm") or {}).get("topologyKey"):
                out.append(required(f"{here}.podAffinityTerm.topologyKey", "can not be empty"))
    return out


# what an ephemeral container may not have: it serves no traffic, is never restarted nor resized,
# and the pod's fundamental services must not rest on it (kube's allow list, seen from the other side)
EPHEMERAL_FORBIDDEN = (
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "lifecycle",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
)


def _ephemeral_containers(path: str, spec: dict[str, Any], volumes: set[str]) -> Errors:
    """kube's validateEphemeralContainers: each a valid container whose name no other container of
    the pod has, whose target (if any) is one of the pod's containers, without the fields above nor
    volume subpaths."""
    out: Errors = []
    others = {c.get("name") for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]}
    seen = set(others)
    for i, c in enumerate(spec.get("ephemeralContainers") or []):
        here = f"{path}.ephemeralContainers[{i}]"
        out += _container(here, c, volumes)
        name = c.get("name")
        if name and name in seen:
            out.append(FieldError("FieldValueDuplicate", f"{here}.name", "", name, True))
        seen.add(name)
        target = c.get("targetContainerName")
        if target and target not in others:
            out.append(FieldError("FieldValueNotFound", f"{here}.targetContainerName", "", target, True))
        for field_name in EPHEMERAL_FORBIDDEN:
            if c.get(field_name):  # absent, null or empty: not set
                out.append(forbidden(f"{here}.{field_name}", "cannot be set for an Ephemeral Container"))
        for j, mount in enumerate(c.get("volumeMounts") or []):
            for sub in ("subPath", "subPathExpr"):
                if mount.get(sub):
                    out.append(forbidden(f"{here}.volumeMounts[{j}].{sub}", "cannot be set for an Ephemeral Container"))
    return out


def validate_pod_spec(path: str, spec: dict[str, Any] | None) -> Errors:
    if spec is None:
        return [required(path)]
    out, volume_names = _volumes(f"{path}.volumes", spec.get("volumes") or [])
    containers = spec.get("containers") or []
    if not containers:
        out.append(required(f"{path}.containers"))
    names: list[tuple[str, int, Any]] = []
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for i, c in enumerate(containers):
        out += _container(f"{path}.containers[{i}]", c, volume_names)
        out += _lifecycle(f"{path}.containers[{i}].lifecycle", c.get("lifecycle"), grace)
        if c.get("restartPolicy") is not None:
            out.append(forbidden(f"{path}.containers[{i}].restartPolicy", "may not be set for non-init containers"))
        names.append(("containers", i, c.get("name")))
    for i, c in enumerate(spec.get("initContainers") or []):
        out += _container(f"{path}.initContainers[{i}]", c, volume_names)
        out += _init_container(f"{path}.initContainers[{i}]", c)
        out += _lifecycle(f"{path}.initContainers[{i}].lifecycle", c.get("lifecycle"), grace)
        names.append(("initContainers", i, c.get("name")))
    seen: set[Any] = set()
    for kind, i, name in names:
        if name and name in seen:
            out.append(FieldError("FieldValueDuplicate", f"{path}.{kind}[{i}].name", "", name, True))
        seen.add(name)
    out += _ephemeral_containers(path, spec, volume_names)
    out += v.one_of(f"{path}.restartPolicy", spec.get("restartPolicy", "Always"), RESTART_POLICIES)
    out += v.one_of(f"{path}.dnsPolicy", spec.get("dnsPolicy", "ClusterFirst"), DNS_POLICIES)
    out += _dns_config(f"{path}.dnsConfig", spec.get("dnsConfig"), spec.get("dnsPolicy", "ClusterFirst"))
    out += v.non_negative(f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))
    out += v.positive(f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"))
    out += v.label_map(f"{path}.nodeSelector", spec.get("nodeSelector"))
    out += tolerations(f"{path}.tolerations", spec.get("tolerations") or [])
    if spec.get("affinity"):
        out += _affinity(f"{path}.affinity", spec["affinity"])
    if spec.get("serviceAccountName"):
        out += v.name_errors(f"{path}.serviceAccountName", spec["serviceAccountName"], v.dns_subdomain)
    if spec.get("nodeName"):
        out += v.name_errors(f"{path}.nodeName", spec["nodeName"], v.dns_subdomain)
    if spec.get("hostname"):
        out += v.name_errors(f"{path}.hostname", spec["hostname"], v.dns_label)
    return out


MAX_DNS_NAMESERVERS = 3  # what the C library's resolver reads
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LENGTH = 2048


def _dns_config(path: str, config: Any, policy: Any) -> Errors:
    """kube's validateDNSPolicy/validatePodDNSConfig: policy None needs a config with a nameserver;
    at most 3 nameservers, each an IP; at most 32 search domains of 2048 characters in all, each a
    DNS subdomain (a trailing dot allowed); every option has a name."""
    if config is None:
        return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")] if policy == "None" else []
    if not isinstance(config, dict):
        return [invalid(path, config, "must be an object")]
    out: Errors = []
    nameservers = config.get("nameservers") or []
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        out.append(
            invalid(f"{path}.nameservers", nameservers, f"must not have more than {MAX_DNS_NAMESERVERS} nameservers")
        )
    for i, server in enumerate(nameservers):
        out += v.ip_address(f"{path}.nameservers[{i}]", server)
    if policy == "None" and not nameservers:
        out.append(required(f"{path}.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None"))
    searches = config.get("searches") or []
    if len(searches) > MAX_DNS_SEARCH_PATHS:
        out.append(
            invalid(f"{path}.searches", searches, f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths")
        )
    if len(" ".join(str(s) for s in searches)) > MAX_DNS_SEARCH_LENGTH:
        out.append(
            invalid(
                f"{path}.searches",
                searches,
                f"must not have more than {MAX_DNS_SEARCH_LENGTH} characters (including spaces) in the search list",
            )
        )
    for i, search in enumerate(searches):
        out += v.name_errors(f"{path}.searches[{i}]", str(search).removesuffix("."), v.dns_subdomain)
    for i, option in enumerate(config.get("options") or []):
        if not isinstance(option, dict) or not option.get("name"):
            out.append(required(f"{path}.options[{i}].name", "Option.Name must not be empty"))
    return out


def validate_template(
    path: str,
    template: dict[str, Any] | None,
    *,
    selector: dict[str, Any] | None,
    restart_policies: Iterable[str],
) -> Errors:
    """A pod template: labels that the selector matches, a valid spec, an allowed restart policy."""
    if template is None:
        return [required(path)]
    out: Errors = []
    labels = (template.get("metadata") or {}).get("labels") or {}
    out += v.label_map(f"{path}.metadata.labels", labels)
    if selector is not None:
        try:
            if not from_structured(selector).matches(labels):
                out.append(invalid(f"{path}.metadata.labels", labels, "`selector` does not match template `labels`"))
        except SelectorError:
            pass  # reported by the selector's own validation
    spec = template.get("spec")
    out += validate_pod_spec(f"{path}.spec", spec)
    if spec is not None and spec.get("ephemeralContainers"):
        out.append(forbidden(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template"))
    if spec is not None:
        policy = spec.get("restartPolicy", "Always")
        if policy in RESTART_POLICIES:  # an unknown policy is already reported by validate_pod_spec
            out += v.one_of(f"{path}.spec.restartPolicy", policy, restart_policies)
    return out
