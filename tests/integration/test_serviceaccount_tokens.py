"""ServiceAccount tokens on a local lab: ``kubectl create token`` (TokenRequest), the token used as a
bearer token (authenticated as the account, authorized by RBAC), revoked with its account, checked by a
TokenReview; and what a bad token gets: 401 and nothing else."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from kubernetes import client, config

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

ISSUER = "https://kubernetes.default.svc.cluster.local"


def as_token(kubectl: Kubectl, lab: Lab, token: str, tmp_path: Path) -> Kubectl:
    """kubectl with only this bearer token (and the lab's CA)."""
    admin = json.loads(kubectl.ok("config", "view", "--raw", "-o", "json"))
    cluster = admin["clusters"][0]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        "current-context": "sa",
    }
    path = tmp_path / f"sa-{uuid.uuid4().hex[:6]}.kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    return Kubectl(path, cache_dir=tmp_path / "cache")


def test_a_token_stands_for_its_account_rbac_decides_and_deleting_the_account_revokes_it(
    lab: Lab, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    kubectl.ok("create", "serviceaccount", "robot", "-n", namespace)
    token = kubectl.ok("create", "token", "robot", "-n", namespace, "--duration=20m").strip()
    header, claims = (json.loads(jwt.utils.base64url_decode(part)) for part in token.split(".")[:2])
    assert header["alg"] == "RS256"
    assert claims["sub"] == f"system:serviceaccount:{namespace}:robot" and claims["iss"] == ISSUER
    assert claims["aud"] == [ISSUER] and 1190 <= claims["exp"] - claims["iat"] <= 1200
    robot = as_token(kubectl, lab, token, tmp_path)
    who = json.loads(robot.ok("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert who["username"] == f"system:serviceaccount:{namespace}:robot"
    assert set(who["groups"]) == {
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    }
    refused = robot("get", "pods", "-n", namespace)
    assert refused.code == 1 and f'User "system:serviceaccount:{namespace}:robot" cannot list' in refused.err
    kubectl.ok(
        "create",
        "rolebinding",
        "robot-views",
        "--clusterrole=view",
        f"--serviceaccount={namespace}:robot",
        "-n",
        namespace,
    )
    eventually(lambda: robot("get", "pods", "-n", namespace).code == 0, what="the account's binding")

    kubectl.ok("delete", "serviceaccount", "robot", "-n", namespace)
    revoked = eventually(
        lambda: (r := robot("get", "pods", "-n", namespace)).code == 1 and r, timeout=30, what="the token revoked"
    )
    assert "error: You must be logged in to the server" in revoked.err  # kubectl's words for a 401


def test_a_token_review_says_who_a_token_is_for_and_a_bound_token_dies_with_its_pod(
    lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.ok("create", "serviceaccount", "worker", "-n", namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "holder", "namespace": namespace},
        "spec": {"serviceAccountName": "worker", "containers": [{"name": "c", "image": "busybox:1.36"}]},
    }
    kubectl.ok("apply", "-f", "-", stdin=json.dumps(pod))
    token = kubectl.ok(
        "create", "token", "worker", "-n", namespace, "--bound-object-kind=Pod", "--bound-object-name=holder"
    ).strip()
    claims = json.loads(jwt.utils.base64url_decode(token.split(".")[1]))
    assert claims["kubernetes.io"]["pod"]["name"] == "holder"
    api = client.AuthenticationV1Api(config.new_client_from_config(config_file=str(lab.kubeconfig)))

    def review(text: str, audiences: list[str] | None = None) -> client.V1TokenReviewStatus:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=text, audiences=audiences))
        status = api.create_token_review(body).status
        assert status is not None
        return status

    status = review(token)
    assert status.authenticated and status.user.username == f"system:serviceaccount:{namespace}:worker"
    assert not review(token, ["some-other-audience"]).authenticated
    kubectl.ok("delete", "pod", "holder", "-n", namespace, "--grace-period=0", "--force")
    eventually(lambda: not review(token).authenticated, timeout=30, what="the bound token dead with its pod")


@pytest.mark.parametrize("what", ["expired", "another key", "malformed", "wrong issuer"])
def test_a_bad_token_is_401_and_nothing_else(
    lab: Lab, kubectl: Kubectl, namespace: str, tmp_path: Path, what: str
) -> None:
    kubectl.ok("create", "serviceaccount", "robot", "-n", namespace)
    uid = kubectl.json("get", "serviceaccount", "robot", "-n", namespace)["metadata"]["uid"]
    now = int(time.time())
    claims = {
        "iss": "https://elsewhere" if what == "wrong issuer" else ISSUER,
        "sub": f"system:serviceaccount:{namespace}:robot",
        "aud": [ISSUER],
        "iat": now - 7200 if what == "expired" else now,
        "nbf": now - 7200 if what == "expired" else now,
        "exp": now - 3600 if what == "expired" else now + 3600,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": "robot", "uid": uid}},
    }
    if what == "another key":
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

        key: object = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = (lab.root / "pki" / "sa.key").read_bytes()
    token = "eyJhbGciOiJSUzI1NiJ9.e30.bm9wZQ" if what == "malformed" else jwt.encode(claims, key, algorithm="RS256")
    result = as_token(kubectl, lab, token, tmp_path)("get", "pods", "-n", namespace)
    assert result.code == 1 and "error: You must be logged in to the server" in result.err  # a 401


def test_a_token_request_for_less_than_ten_minutes_or_a_missing_account_is_refused(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.ok("create", "serviceaccount", "robot", "-n", namespace)
    short = kubectl("create", "token", "robot", "-n", namespace, "--duration=5m")
    assert short.code == 1 and "may not specify a duration less than 10 minutes" in short.err
    missing = kubectl("create", "token", "nobody", "-n", namespace)
    assert missing.code == 1 and 'serviceaccounts "nobody" not found' in missing.err


def test_pods_get_their_account_s_token_volume_unless_they_opt_out_and_a_missing_account_is_refused(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.ok("create", "serviceaccount", "quiet", "-n", namespace)
    kubectl.ok("patch", "serviceaccount", "quiet", "-n", namespace, "-p", '{"automountServiceAccountToken": false}')

    def pod(name: str, **spec: object) -> str:
        body = {"name": "c", "image": "busybox:1.36"}
        return json.dumps(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [body], **spec}}
        )

    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=pod("mounted"))
    spec = kubectl.json("get", "pod", "mounted", "-n", namespace)["spec"]
    (volume,) = spec["volumes"]
    assert volume["name"].startswith("kube-api-access-")
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": volume["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    ]
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=pod("opted-out", automountServiceAccountToken=False))
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=pod("quiet-account", serviceAccountName="quiet"))
    for name in ("opted-out", "quiet-account"):
        assert not kubectl.json("get", "pod", name, "-n", namespace)["spec"].get("volumes")
    missing = kubectl("apply", "-n", namespace, "-f", "-", stdin=pod("orphan", serviceAccountName="nobody"))
    assert missing.code == 1
    assert (
        f'pods "orphan" is forbidden: error looking up service account {namespace}/nobody:'
        ' serviceaccount "nobody" not found'
    ) in missing.err
    eventually(lambda: kubectl("get", "configmap", "kube-root-ca.crt", "-n", namespace).ok, what="the root CA")
    assert (
        "BEGIN CERTIFICATE" in kubectl.json("get", "configmap", "kube-root-ca.crt", "-n", namespace)["data"]["ca.crt"]
    )
