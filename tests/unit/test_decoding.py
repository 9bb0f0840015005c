"""The front door: every body and query parameter is typed before anything else runs, and what does not
decode is a 400 Status in Kubernetes' words naming the field, for every group, verb and subresource."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.apiserver import protobuf, schemas
from agents.apiserver.decoding import PARAMETERS, decode_query, parse_bool, parse_int64
from agents.apiserver.handlers import WARNINGS_MAX, limited_warnings
from agents.apiserver.status import StatusError
from agents.apiserver.structural import Checker, go_type

Client = TestClient[Any, Any]
NS = "/api/v1/namespaces/default"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
INT64_BEYOND = "204657821028541235200"  # the fuzzer's limit


def deployment(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
            **spec,
        },
    }


async def refused(response: Any) -> dict[str, Any]:
    """The Status of a request the front door refused."""
    status: dict[str, Any] = await response.json()
    assert response.status == 400, status
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "BadRequest", 400)
    return status


# --- the reproductions of the issue: every group, every one of them a 400 -------------------------

METADATA_AS_A_LIST = [
    ("/api/v1/namespaces", "Namespace", "v1"),
    (f"{NS}/configmaps", "ConfigMap", "v1"),
    (f"{NS}/endpoints", "Endpoints", "v1"),
    (f"{NS}/events", "Event", "v1"),
    (f"{NS}/services", "Service", "v1"),
    ("/api/v1/nodes", "Node", "v1"),
    ("/apis/coordination.k8s.io/v1/namespaces/default/leases", "Lease", "v1"),
    ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", "EndpointSlice", "v1"),
    (DEPLOY, "Deployment", "v1"),
    ("/apis/batch/v1/namespaces/default/jobs", "Job", "v1"),
]


@pytest.mark.parametrize(("path", "kind", "version"), METADATA_AS_A_LIST)
async def test_metadata_that_is_a_list_is_a_decoding_error_in_kubes_words(
    http: Client, path: str, kind: str, version: str
) -> None:
    response = await http.post(path, json={"apiVersion": "", "kind": "", "metadata": [None, None], "spec": {}})
    status = await refused(response)
    assert status["message"] == (
        f'{kind} in version "{version}" cannot be handled as a {kind}: json: cannot unmarshal array into Go'
        f" struct field {kind}.metadata of type v1.ObjectMeta"
    )
    assert status["details"]["causes"] == [
        {"reason": "FieldValueTypeInvalid", "field": "metadata", "message": status["message"].split(": ", 1)[1]}
    ]


async def test_a_node_capacity_that_is_an_object_is_a_decoding_error_naming_the_quantity(http: Client) -> None:
    node = {"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": {"a": 1}, "memory": "1Gi"}}}
    status = await refused(await http.post("/api/v1/nodes", json=node))
    assert status["message"].startswith('Node in version "v1" cannot be handled as a Node: status.capacity[cpu]: ')
    assert "quantities must match the regular expression" in status["message"]
    assert (await http.get("/api/v1/nodes/n1")).status == 404


@pytest.mark.parametrize(
    "path", [f"{NS}/services", f"{NS}/events", "/apis/coordination.k8s.io/v1/namespaces/default/leases"]
)
async def test_a_limit_beyond_int64_is_a_bad_request(http: Client, path: str) -> None:
    status = await refused(await http.get(f"{path}?limit={INT64_BEYOND}"))
    assert status["message"] == f'strconv.ParseInt: parsing "{INT64_BEYOND}": value out of range'


# --- JSON types and integer ranges, anywhere in the object ------------------------------------------


async def test_int32_and_int64_fields_are_checked_against_their_own_range(http: Client) -> None:
    status = await refused(await http.post(DEPLOY, json=deployment(replicas=2**31)))
    assert status["message"].endswith(
        f"json: cannot unmarshal number {2**31} into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    assert (await http.post(DEPLOY, json=deployment("max", replicas=2**31 - 1))).status == 201
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}], "activeDeadlineSeconds": 2**63}
    pod = {"metadata": {"name": "p"}, "spec": spec}
    status = await refused(await http.post(f"{NS}/pods", json=pod))
    assert status["details"]["causes"][0]["field"] == "spec.activeDeadlineSeconds"
    assert status["message"].endswith("of type int64")
    spec["activeDeadlineSeconds"] = 2**40  # beyond int32, within int64
    assert (await http.post(f"{NS}/pods", json=pod)).status == 201


async def test_a_float_where_an_integer_belongs_is_refused_as_kubes_decoder_does(http: Client) -> None:
    status = await refused(await http.post(DEPLOY, json=deployment(replicas=1.5)))
    assert "cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas" in status["message"]


async def test_every_mismatch_in_nested_lists_and_maps_is_listed_with_its_path(http: Client) -> None:
    body = deployment()
    body["metadata"]["labels"] = {"tier": 3}
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["ports"] = "80"
    container["env"] = [{"name": "A", "value": True}]
    status = await refused(await http.post(DEPLOY, json=body))
    causes = {c["field"]: c["message"] for c in status["details"]["causes"]}
    assert causes == {
        "metadata.labels[tier]": "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels"
        " of type string",
        "spec.template.spec.containers[0].ports": "json: cannot unmarshal string into Go struct field"
        " Container.spec.template.spec.containers.ports of type []v1.ContainerPort",
        "spec.template.spec.containers[0].env[0].value": "json: cannot unmarshal bool into Go struct field"
        " EnvVar.spec.template.spec.containers.env.value of type string",
    }
    assert status["message"].endswith(causes["metadata.labels[tier]"])  # the first, as Go reports one


async def test_int_or_string_times_and_base64_are_decoded_by_their_own_rules(http: Client) -> None:
    body = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2**31}})
    status = await refused(await http.post(DEPLOY, json=body))
    assert status["message"].endswith(
        f"spec.strategy.rollingUpdate.maxSurge: json: cannot unmarshal number {2**31} into Go value of type int32"
    )
    event = {"metadata": {"name": "e"}, "involvedObject": {}, "lastTimestamp": "yesterday"}
    status = await refused(await http.post(f"{NS}/events", json=event))
    assert status["details"]["causes"][0]["field"] == "lastTimestamp"
    secret = {"metadata": {"name": "s"}, "data": {"k": "not base64!"}}
    status = await refused(await http.post(f"{NS}/secrets", json=secret))
    assert status["message"].endswith("data[k]: illegal base64 data at input byte 3")


async def test_decoding_comes_before_validation_and_nothing_is_stored(http: Client) -> None:
    body = deployment("both", replicas="three")
    body["spec"]["selector"] = {"matchLabels": {"app": "other"}}  # also invalid (422), but decoded first
    await refused(await http.post(DEPLOY, json=body))
    assert (await http.get(f"{DEPLOY}/both")).status == 404


# --- every verb, the subresources, and every body format ---------------------------------------------


async def test_updates_patch_results_and_subresources_go_through_the_same_step(http: Client) -> None:
    assert (await http.post(DEPLOY, json=deployment())).status == 201
    replaced = deployment(replicas="2")
    status = await refused(await http.put(f"{DEPLOY}/web", json=replaced))
    assert "DeploymentSpec.spec.replicas of type int32" in status["message"]

    merge = {"Content-Type": "application/merge-patch+json"}
    status = await refused(await http.patch(f"{DEPLOY}/web", data=json.dumps({"metadata": [1]}), headers=merge))
    assert "Deployment.metadata of type v1.ObjectMeta" in status["message"]
    json_patch = [{"op": "replace", "path": "/spec/replicas", "value": {"n": 1}}]
    status = await refused(
        await http.patch(
            f"{DEPLOY}/web", data=json.dumps(json_patch), headers={"Content-Type": "application/json-patch+json"}
        )
    )
    assert "cannot unmarshal object into Go struct field DeploymentSpec.spec.replicas" in status["message"]

    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": "9"}}
    status = await refused(await http.put(f"{DEPLOY}/web/scale", json=scale))
    assert status["message"] == (
        'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal string into Go struct field'
        " ScaleSpec.spec.replicas of type int32"
    )
    status = await refused(
        await http.patch(f"{DEPLOY}/web/scale", data=json.dumps({"spec": {"replicas": -(2**40)}}), headers=merge)
    )
    assert "ScaleSpec.spec.replicas of type int32" in status["message"]
    current = await (await http.get(f"{DEPLOY}/web")).json()
    current["status"] = {"replicas": [1]}
    status = await refused(await http.put(f"{DEPLOY}/web/status", json=current))
    assert "DeploymentStatus.status.replicas of type int32" in status["message"]
    assert (await (await http.get(f"{DEPLOY}/web")).json())["spec"]["replicas"] == 1


async def test_a_patch_document_of_the_wrong_shape_is_refused_before_it_is_applied(http: Client) -> None:
    assert (await http.post(DEPLOY, json=deployment())).status == 201
    status = await refused(
        await http.patch(f"{DEPLOY}/web", data="[]", headers={"Content-Type": "application/merge-patch+json"})
    )
    assert status["message"] == "json: cannot unmarshal array into Go value of type map[string]interface {}"
    status = await refused(
        await http.patch(f"{DEPLOY}/web", data="{}", headers={"Content-Type": "application/json-patch+json"})
    )
    assert status["message"] == "json: cannot unmarshal object into Go value of type jsonpatch.Patch"


async def test_yaml_bodies_are_decoded_as_kube_converts_yaml_to_json(http: Client) -> None:
    headers = {"Content-Type": "application/yaml"}
    good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  annotations: {at: 2024-01-01T00:00:00Z}\n"
    created = await http.post(f"{NS}/configmaps", data=good, headers=headers)
    assert created.status == 201, await created.text()
    assert (await created.json())["metadata"]["annotations"] == {"at": "2024-01-01T00:00:00Z"}  # not a date
    deploy = "kind: Deployment\napiVersion: apps/v1\nmetadata: {name: y}\nspec: {replicas: yes}\n"
    status = await refused(await http.post(DEPLOY, data=deploy, headers=headers))
    assert "cannot unmarshal bool into Go struct field DeploymentSpec.spec.replicas" in status["message"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(7)
    )
    status = await refused(await http.post(f"{NS}/configmaps", data=bomb, headers=headers))
    assert "too many values" in status["message"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """A Kubernetes protobuf body: the magic number and a runtime.Unknown around ``raw``."""
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return protobuf.MAGIC + _field(1, type_meta) + _field(2, raw)


async def test_protobuf_bodies_go_through_the_same_check(http: Client) -> None:
    replicas = _varint(1 << 3) + _varint(2**31 + 5)  # DeploymentSpec.replicas (field 1), beyond int32
    raw = _field(1, _field(1, b"web")) + _field(2, replicas)
    response = await http.post(
        DEPLOY, data=_envelope("apps/v1", "Deployment", raw), headers={"Content-Type": protobuf.MEDIA_TYPE}
    )
    status = await refused(response)
    assert "DeploymentSpec.spec.replicas of type int32" in status["message"]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["Pod", "Deployment", "Node", "Event", "Service"]), raw=st.binary(max_size=300))
def test_any_protobuf_bytes_decode_or_are_a_400(kind: str, raw: bytes) -> None:
    try:
        protobuf.decode(_envelope("apps/v1" if kind == "Deployment" else "v1", kind, raw))
    except StatusError as exc:
        assert exc.code == 400


async def test_delete_options_in_a_body_are_decoded_too(http: Client) -> None:
    assert (await http.post(f"{NS}/configmaps", json={"metadata": {"name": "d"}})).status == 201
    options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": "soon"}
    status = await refused(await http.delete(f"{NS}/configmaps/d", data=json.dumps(options)))
    assert "DeleteOptions.gracePeriodSeconds of type int64" in status["message"]
    options["gracePeriodSeconds"] = 0
    assert (await http.delete(f"{NS}/configmaps/d", data=json.dumps(options))).status == 200


async def test_warnings_about_unknown_fields_are_quoted_and_bounded(http: Client) -> None:
    body: dict[str, Any] = {"metadata": {"name": "w"}, "data": {}}
    body.update({f"bad\r\nfield-{i}": i for i in range(400)})
    response = await http.post(f"{NS}/configmaps", json=body)
    assert response.status == 201
    warnings = response.headers.getall("Warning")
    assert warnings[0] == '299 - "unknown field \\"bad\\r\\nfield-0\\""'
    assert len(warnings) == WARNINGS_MAX and sum(len(w) for w in warnings) < 4 * 1024


# --- query parameters ---------------------------------------------------------------------------------


async def test_query_parameters_are_converted_as_kubernetes_converts_them(http: Client) -> None:
    status = await refused(await http.get(f"{NS}/configmaps?limit=ten"))
    assert status["message"] == 'strconv.ParseInt: parsing "ten": invalid syntax'
    status = await refused(await http.get(f"{NS}/configmaps?limit="))
    assert status["message"] == 'strconv.ParseInt: parsing "": invalid syntax'
    status = await refused(await http.get(f"{NS}/configmaps?watch=1&timeoutSeconds=1.5"))
    assert status["message"] == 'strconv.ParseInt: parsing "1.5": invalid syntax'
    assert (await http.delete(f"{NS}/configmaps/x?gracePeriodSeconds=-")).status == 400
    listed = await http.get(f"{NS}/configmaps?watch=false&limit=%2B1")  # "false" is false; "+1" parses
    assert listed.status == 200 and (await listed.json())["kind"] == "ConfigMapList"


async def test_parameters_a_verb_does_not_take_are_ignored_as_kube_ignores_them(http: Client) -> None:
    assert (await http.post(f"{NS}/configmaps", json={"metadata": {"name": "g"}})).status == 201
    assert (await http.get(f"{NS}/configmaps/g?limit=ten&timeoutSeconds=x")).status == 200


def test_integer_and_boolean_conversions() -> None:
    assert parse_int64("+42") == 42 and parse_int64("-0009") == -9
    assert parse_int64(str(2**63 - 1)) == 2**63 - 1 and parse_int64(str(-(2**63))) == -(2**63)
    for text, why in (
        ("9223372036854775808", "value out of range"),
        ("1_000", "invalid syntax"),
        (" 1", "invalid syntax"),
    ):
        with pytest.raises(StatusError, match=why):
            parse_int64(text)
    with pytest.raises(StatusError, match=r'parsing "\\n": invalid syntax'):
        parse_int64("\n")
    assert [parse_bool(t) for t in ("0", "false", "FALSE", "", "1", "no", "true")] == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
    ]


def test_every_operation_declares_its_parameters_once() -> None:
    for operation, parameters in PARAMETERS.items():
        names = [p.name for p in parameters]
        assert len(names) == len(set(names)), operation
    query = decode_query("deletecollection", _Query({"limit": ["3"], "gracePeriodSeconds": ["0"], "dryRun": ["All"]}))
    assert (query.integer("limit"), query.integer("gracePeriodSeconds"), query.texts("dryRun")) == (3, 0, ("All",))


class _Query:
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    def getall(self, key: str, default: list[str]) -> list[str]:
        return self._values.get(key, default)


# --- the schemas the checks read --------------------------------------------------------------------


def test_every_integer_of_the_served_kinds_has_its_go_format(definitions: dict[str, Any]) -> None:
    assert schemas.integers_without_format(definitions) == []
    spec = definitions["V1DeploymentSpec"]["properties"]
    meta = definitions["V1ObjectMeta"]["properties"]
    assert (spec["replicas"]["format"], meta["generation"]["format"]) == ("int32", "int64")
    assert definitions["V1ContainerPort"]["properties"]["containerPort"]["format"] == "int32"


def test_go_type_names_are_the_ones_gos_decoder_prints(definitions: dict[str, Any]) -> None:
    pod_spec = definitions["V1PodSpec"]["properties"]
    assert go_type(pod_spec["containers"]) == "[]v1.Container"
    assert go_type(pod_spec["nodeSelector"]) == "map[string]string"
    assert go_type(pod_spec["overhead"]) == "map[string]resource.Quantity"
    assert go_type(definitions["V1ObjectMeta"]["properties"]["creationTimestamp"]) == "v1.Time"
    event = Checker(definitions).check("CoreV1Event", {"metadata": {"name": 1}}, drop_unknown=False)
    assert (
        event.decode[0].message
        == "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string"
    )


async def test_the_published_documents_declare_the_formats_and_parameters_decoded(http: Client) -> None:
    document = await (await http.get("/openapi/v3/apis/apps/v1")).json()
    spec = document["components"]["schemas"]["v1.DeploymentSpec"]["properties"]
    assert spec["replicas"]["format"] == "int32"
    listing = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "format": "int64"}
    answer = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/v1.DeploymentList"}
    assert {p.name for p in PARAMETERS["list"]} == {p["name"] for p in listing["parameters"]}


def test_long_warnings_are_cut_as_kubes_recorder_cuts_them() -> None:
    long = [f"{i:03d}" + "x" * 997 for i in range(10)]
    kept = limited_warnings([*long, long[0]])
    assert [len(w) for w in kept] == [256] * 10  # past 4 KiB every warning is cut to 256 characters
    assert limited_warnings(["a", "b", "a"]) == ["a", "b"]
