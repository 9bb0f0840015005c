"""The add-on catalog: what an add-on is, a lab's choices, rendered manifests and their mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.addons import catalog, manager
from provisioner.addons.catalog import Manifest
from provisioner.errors import SpecError
from provisioner.lab.spec import LabSpec


def addon_dir(root: Path, name: str, *, meta: str, files: dict[str, str]) -> Path:
    directory = root / "addons" / name
    directory.mkdir(parents=True)
    (directory / "addon.yaml").write_text(meta)
    for file, text in files.items():
        (directory / file).write_text(text)
    return root / "addons"


def test_the_shipped_dns_addon_renders_for_a_lab() -> None:
    known = catalog.load()
    assert (
        set(known) == {"dashboard", "dns", "ingress-nginx", "metrics-server", "storage"}
        and known["dns"].default
        and known["dns"].images == ("kube-dns",)
    )
    values = manager.values_for(LabSpec(name="x", service_cidr="10.100.0.0/16"), {"kube-dns": "kube-dns:1.0-abc"})
    objects = {(m.kind, m.name): m for m in catalog.render(known["dns"], values)}
    assert set(objects) == {
        ("ServiceAccount", "kube-dns"),
        ("ClusterRole", "system:kube-dns"),
        ("ClusterRoleBinding", "system:kube-dns"),
        ("Deployment", "kube-dns"),
        ("Service", "kube-dns"),
    }
    assert objects[("Service", "kube-dns")].body["spec"]["clusterIP"] == "10.100.0.10"
    deployment = objects[("Deployment", "kube-dns")].body
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "kube-dns:1.0-abc"
    assert objects[("Deployment", "kube-dns")].source == "addons/dns/deployment.yaml.j2"


def test_choices_override_defaults_and_unknown_names_are_refused(tmp_path: Path) -> None:
    known = catalog.load()
    assert catalog.enabled(known, catalog.read_choices(tmp_path)) == ["dns", "metrics-server", "storage"]
    catalog.write_choices(tmp_path, {"dns": False})
    assert catalog.enabled(known, catalog.read_choices(tmp_path)) == ["metrics-server", "storage"]
    assert catalog.unknown(known, ["dns"]) == ""
    assert (
        catalog.unknown(known, ["dsn"])
        == "no add-on named 'dsn'; known: dashboard, dns, ingress-nginx, metrics-server, storage (kubelab addons list)"
    )


def test_the_applied_object_carries_the_addon_label_and_the_manifests_digest() -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}}
    first = manager.desired(Manifest("addons/x/c.yaml", 1, body), "x")
    assert first["metadata"]["labels"] == {"a": "b", manager.ADDON_LABEL: "x"}
    changed = manager.desired(Manifest("addons/x/c.yaml", 1, {**body, "data": {"k": "v"}}), "x")
    digest = manager.DIGEST_ANNOTATION
    assert first["metadata"]["annotations"][digest] != changed["metadata"]["annotations"][digest]
    assert "annotations" not in body["metadata"]  # the manifest itself is left as it was


@pytest.mark.parametrize(
    ("meta", "files", "message"),
    [
        ("description: x\ndefault: maybe\n", {}, "addons/bad/addon.yaml: default: true or false"),
        ("description: x\nimages: kube-dns\n", {}, "addons/bad/addon.yaml: images: expected a list"),
        ("description: x\ncolour: blue\n", {}, "addons/bad/addon.yaml: give description, default"),
        (
            "{}\n",
            {"a.yaml": "kind: ConfigMap\nmetadata: {name: a}\n"},
            "addons/bad/a.yaml: document 1: apiVersion: Required value",
        ),
        (
            "{}\n",
            {"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"},
            "addons/bad/a.yaml: document 1: metadata.name: Required value",
        ),
        ("{}\n", {"a.yaml": "apiVersion: v1\nkind: [\n"}, "addons/bad/a.yaml: not valid YAML"),
        ("{}\n", {"a.yaml.j2": "apiVersion: v1\nkind: {{ nothing }}\n"}, "addons/bad/a.yaml.j2: cannot be rendered"),
    ],
)
def test_a_bad_addon_is_refused_in_one_line_naming_the_file(
    tmp_path: Path, meta: str, files: dict[str, str], message: str
) -> None:
    root = addon_dir(tmp_path, "bad", meta=meta, files=files)
    with pytest.raises(SpecError) as caught:
        for addon in catalog.load(root).values():
            catalog.render(addon, {})
    assert str(caught.value).startswith(message), str(caught.value)
