"""Pod specs as hypothesis writes them for the kubelet: over what the kubelet reads (images and pull
policies, commands, working directories, environment from values, fields, ConfigMaps and Secrets that
exist or not, volumes of every kind the API knows, mounts, limits down to one byte, ports, probes of
every handler with named ports that exist or not, restart policies, grace periods).

ConfigMaps and Secrets are named ``present`` (keys ``color``, ``size``; ``token``) or ``missing``;
hostPath volumes point into a directory the caller gives (``dir``, ``file`` and ``missing`` in it),
never elsewhere on the host.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# mostly images the lab's registry has, so that most pods get as far as containerd
IMAGES = [
    *["busybox:1.35.0"] * 5,
    *["echo:1.0"] * 3,
    "busybox",
    "no-such-image:1.0",
    "busybox:no-such-tag",
    "BusyBox:1",
    "localhost:1/x:1",
]
names = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
words = st.sampled_from(["sh", "-c", "true", "false", "sleep", "30", "exit 3", "echo hi", "no-such-command", ""]) | (
    st.text(alphabet=string.printable + "éß€", max_size=12)
)
env_names = st.sampled_from(["A", "B_2", "COLOR", "PATH", "HOME", "x.y", "_under"])


def env_var() -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(
        [
            "metadata.name",
            "metadata.namespace",
            "metadata.uid",
            "metadata.labels['app']",
            "metadata.annotations['note']",
            "spec.nodeName",
            "spec.serviceAccountName",
            "status.podIP",
            "status.hostIP",
            "status.podIPs",
        ]
    )
    key_ref = st.fixed_dictionaries(
        {"name": st.sampled_from(["present", "missing"]), "key": st.sampled_from(["color", "token", "nope"])},
        optional={"optional": st.booleans()},
    )
    source = st.one_of(
        st.fixed_dictionaries({"fieldRef": st.fixed_dictionaries({"fieldPath": field})}),
        st.fixed_dictionaries({"configMapKeyRef": key_ref}),
        st.fixed_dictionaries({"secretKeyRef": key_ref}),
        st.fixed_dictionaries(
            {
                "resourceFieldRef": st.fixed_dictionaries(
                    {"resource": st.sampled_from(["limits.memory", "requests.cpu"])}
                )
            }
        ),
    )
    return st.one_of(
        st.fixed_dictionaries({"name": env_names, "value": words}),
        st.fixed_dictionaries({"name": env_names, "valueFrom": source}),
    )


def env_from() -> st.SearchStrategy[dict[str, Any]]:
    ref = st.fixed_dictionaries({"name": st.sampled_from(["present", "missing"])}, optional={"optional": st.booleans()})
    return st.one_of(
        st.fixed_dictionaries({"configMapRef": ref}, optional={"prefix": st.sampled_from(["P_", ""])}),
        st.fixed_dictionaries({"secretRef": ref}),
    )


def probe(ports: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    port = st.integers(min_value=1, max_value=65535) | st.sampled_from([*ports, "unnamed", "8080"])
    handler = st.one_of(
        st.fixed_dictionaries({"exec": st.fixed_dictionaries({"command": st.lists(words, min_size=1, max_size=3)})}),
        st.fixed_dictionaries(
            {
                "httpGet": st.fixed_dictionaries(
                    {"port": port}, optional={"path": st.sampled_from(["/", "/x", "", "no-slash"])}
                )
            }
        ),
        st.fixed_dictionaries({"tcpSocket": st.fixed_dictionaries({"port": port})}),
        st.fixed_dictionaries({"grpc": st.fixed_dictionaries({"port": st.integers(min_value=1, max_value=65535)})}),
    )
    timing = st.fixed_dictionaries(
        {},
        optional={
            "periodSeconds": st.integers(min_value=1, max_value=3),
            "timeoutSeconds": st.integers(min_value=1, max_value=2),
            "failureThreshold": st.integers(min_value=1, max_value=3),
            "initialDelaySeconds": st.integers(min_value=0, max_value=2),
        },
    )
    return st.tuples(handler, timing).map(lambda parts: {**parts[0], **parts[1]})


@st.composite
def containers(draw: st.DrawFn, volumes: list[str]) -> list[dict[str, Any]]:
    found = []
    for name in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        container: dict[str, Any] = {
            "name": name,
            "image": draw(st.sampled_from(IMAGES)),
        }
        optional = {
            "imagePullPolicy": st.sampled_from(["IfNotPresent", "Never", "Always"]),
            "command": st.lists(words, max_size=3),
            "args": st.lists(words, max_size=3),
            "workingDir": st.sampled_from(["/tmp", "/no/such/dir", "relative/dir", "/"]),
            "env": st.lists(env_var(), max_size=3),
            "envFrom": st.lists(env_from(), max_size=2),
            "resources": st.fixed_dictionaries(
                {},
                optional={
                    "limits": st.fixed_dictionaries(
                        {},
                        optional={
                            "memory": st.sampled_from(["1", "4Mi", "16Mi", "1Gi", "100M"]),
                            "cpu": st.sampled_from(["1m", "100m", "500m", "2"]),
                        },
                    ),
                },
            ),
            "securityContext": st.fixed_dictionaries(
                {}, optional={"runAsUser": st.integers(min_value=0, max_value=65534), "privileged": st.booleans()}
            ),
        }
        for key, strategy in optional.items():
            if draw(st.booleans()):
                container[key] = draw(strategy)
        port_names = []
        if draw(st.booleans()):
            ports = []
            for number in draw(st.lists(st.integers(min_value=1, max_value=65535), max_size=2, unique=True)):
                port: dict[str, Any] = {"containerPort": number, "protocol": draw(st.sampled_from(["TCP", "UDP"]))}
                if draw(st.booleans()):
                    port["name"] = f"p{number}"[:15]
                    port_names.append(port["name"])
                ports.append(port)
            container["ports"] = ports
        for kind in ("liveness", "readiness", "startup"):
            if draw(st.integers(min_value=0, max_value=3)) == 0:
                container[f"{kind}Probe"] = draw(probe(port_names))
        if draw(st.booleans()) and volumes:
            mounts = []
            for path, volume in zip(
                draw(st.lists(st.sampled_from(["/data", "/etc/cfg", "/tmp/x", "/srv/a"]), max_size=2, unique=True)),
                draw(st.lists(st.sampled_from(volumes), min_size=2, max_size=2)),
                strict=False,
            ):
                mount: dict[str, Any] = {"name": volume, "mountPath": path}
                if draw(st.booleans()):
                    mount["readOnly"] = True
                if draw(st.booleans()):
                    mount["subPath"] = draw(st.sampled_from(["sub", "color", "a/b"]))
                mounts.append(mount)
            container["volumeMounts"] = mounts
        found.append(container)
    return found


@st.composite
def pod_specs(draw: st.DrawFn, host_dir: Path) -> dict[str, Any]:
    volume_sources = {
        "emptyDir": st.fixed_dictionaries(
            {}, optional={"medium": st.sampled_from(["", "Memory"]), "sizeLimit": st.sampled_from(["1Mi", "1Gi"])}
        ),
        "hostPath": st.fixed_dictionaries(
            {"path": st.sampled_from([str(host_dir / "dir"), str(host_dir / "file"), str(host_dir / "missing")])},
            optional={
                "type": st.sampled_from(["", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"])
            },
        ),
        "configMap": st.fixed_dictionaries(
            {"name": st.sampled_from(["present", "missing"])},
            optional={
                "optional": st.booleans(),
                "defaultMode": st.integers(min_value=0, max_value=0o777),
                "items": st.lists(
                    st.fixed_dictionaries(
                        {"key": st.sampled_from(["color", "nope"]), "path": st.sampled_from(["c", "d/e"])}
                    ),
                    max_size=2,
                ),
            },
        ),
        "secret": st.fixed_dictionaries(
            {"secretName": st.sampled_from(["present", "missing"])}, optional={"optional": st.booleans()}
        ),
        "downwardAPI": st.fixed_dictionaries(
            {"items": st.just([{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}])}
        ),
    }
    volumes: list[dict[str, Any]] = []
    for name in draw(st.lists(names, max_size=3, unique=True)):
        kind = draw(st.sampled_from(sorted(volume_sources)))
        volumes.append({"name": name, kind: draw(volume_sources[kind])})
    spec: dict[str, Any] = {
        "containers": draw(containers([v["name"] for v in volumes])),
        "restartPolicy": draw(st.sampled_from(["Always", "OnFailure", "Never"])),
        "terminationGracePeriodSeconds": draw(st.integers(min_value=0, max_value=2)),
    }
    if volumes:
        spec["volumes"] = volumes
    if draw(st.booleans()):
        spec["hostname"] = draw(st.sampled_from(["h", "a" * 63, "with-dash"]))
    return spec
