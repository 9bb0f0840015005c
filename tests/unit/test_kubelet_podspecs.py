"""Whatever pod the API accepts, the kubelet's planning of a container either gives containerd a spec
or raises one of the errors the kubelet reports on the pod (kube's CreateContainerConfigError,
FailedMount, CreateContainerError); never an exception it does not expect. The same generated pods go
to a real node in tests/integration/test_kubelet_fuzz.py.

ConfigMaps and Secrets are read from dictionaries (a fake declared openly: ``present`` exists,
``missing`` does not)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings

from agents.kubelet import podstate
from agents.kubelet.containers import ContainerId
from agents.kubelet.oci import SpecError, runtime_spec
from agents.kubelet.runtime import container_spec
from agents.kubelet.volumes import VolumeError, environment, plan_volumes, write_volumes
from tests.support.podspecs import pod_specs

HOST = Path(tempfile.mkdtemp(prefix="kl-podspecs-"))
(HOST / "dir").mkdir(exist_ok=True)
(HOST / "file").write_text("on the host\n")
OBJECTS = {
    "configmap": {"present": {"data": {"color": "blue", "size": "3"}}},
    "secret": {"present": {"data": {"token": base64.b64encode(b"s3cret").decode(), "raw": "/w=="}}},
}
IMAGE_CONFIG = {"Entrypoint": [], "Cmd": ["sh"], "Env": ["PATH=/bin"], "User": ""}


async def configmaps(_namespace: str, name: str) -> dict[str, Any] | None:
    return OBJECTS["configmap"].get(name)


async def secrets(_namespace: str, name: str) -> dict[str, Any] | None:
    return OBJECTS["secret"].get(name)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=pod_specs(HOST))
async def test_planning_a_container_gives_a_spec_or_an_error_the_kubelet_reports(spec: dict[str, Any]) -> None:
    uid = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
    pod = {"metadata": {"name": "p", "namespace": "fz", "uid": uid}, "spec": spec}
    with tempfile.TemporaryDirectory() as tmp:
        pod_dir = Path(tmp) / "pods" / uid
        for number, container in enumerate(spec["containers"]):
            try:
                volumes = await plan_volumes(pod, pod_dir, configmaps=configmaps, secrets=secrets)
                write_volumes(volumes)
                env = await environment(
                    pod,
                    container,
                    image_env=[*IMAGE_CONFIG["Env"], "HOSTNAME=p"],
                    host_ip="10.250.0.2",
                    pod_ip="10.244.0.5",
                    configmaps=configmaps,
                    secrets=secrets,
                )
                made = container_spec(
                    pod,
                    container,
                    cid=ContainerId(uid, container["name"], number),
                    image="docker.io/library/busybox:1.35.0",
                    config=IMAGE_CONFIG,
                    env=env,
                    volumes=volumes,
                    netns="/run/netns/x",
                    uts="",
                    hosts=pod_dir / "etc-hosts",
                )
                runtime_spec(made, image_config=IMAGE_CONFIG, namespace="k8s.io")
            except (VolumeError, SpecError):
                continue
    observed = podstate.Observed(sandbox_ip="10.244.0.5")
    assert podstate.plan(pod, observed, 1_000.0)[0]
    podstate.pod_status(pod, observed, host_ip="10.250.0.2", started_at=1_000.0, now=1_000.0)
