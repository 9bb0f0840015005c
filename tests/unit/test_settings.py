"""One settings object per program: defaults < config file < environment < flags, one name each."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.apiserver.server import check_settings, etcd_tls
from agents.apiserver.settings import ApiServerSettings
from agents.machinery.settings import SettingsError, load


def test_precedence_and_shared_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "apiserver.yaml"
    config.write_text("secure-port: 7000\netcd-servers: [http://a:2379, http://b:2379]\nlog-level: debug\n")
    monkeypatch.setenv("KUBELAB_APISERVER_SECURE_PORT", "7100")
    settings = load(
        ApiServerSettings,
        ["--config", str(config), "--log-level", "warning"],
        env_prefix="KUBELAB_APISERVER",
        prog="test",
    )
    assert settings.secure_port == 7100  # the environment beats the file
    assert settings.log.level == "warning"  # flags beat the file
    assert settings.etcd.servers == ("http://a:2379", "http://b:2379")
    assert settings.service.cluster_ip_range == "10.96.0.0/12"  # a default
    flagged = load(
        ApiServerSettings,
        ["--etcd-servers", "http://x:1,http://y:2", "--workers", "2"],
        env_prefix="KUBELAB_NOTHING",
        prog="test",
    )
    assert flagged.etcd.servers == ("http://x:1", "http://y:2") and flagged.worker_count() == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: red\n", "unknown setting 'colour'"),
        ("secure-port: many\n", "secure-port: invalid value 'many'"),
        ("- a list\n", "expected a mapping"),
        ("key: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_files_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load(ApiServerSettings, ["--config", str(config)], env_prefix="KUBELAB_NOTHING", prog="test")


def test_an_https_etcd_takes_kube_apiserver_s_tls_flags_and_a_half_given_pair_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    (tmp_path / "c.crt").write_bytes(b"CERT")
    (tmp_path / "c.key").write_bytes(b"KEY")
    flags = ["--etcd-servers", "https://10.0.0.1:2379", "--etcd-cafile", str(tmp_path / "ca.crt")]
    both = [*flags, "--etcd-certfile", str(tmp_path / "c.crt"), "--etcd-keyfile", str(tmp_path / "c.key")]
    settings = load(ApiServerSettings, both, env_prefix="KUBELAB_NOTHING", prog="test")
    check_settings(settings)
    tls = etcd_tls(settings.etcd)
    assert tls is not None and (tls.ca, tls.cert, tls.key) == (b"CA", b"CERT", b"KEY")
    plain = load(ApiServerSettings, ["--etcd-servers", "http://a:2379"], env_prefix="KUBELAB_NOTHING", prog="test")
    assert etcd_tls(plain.etcd) is None
    no_ca = load(ApiServerSettings, flags[:2], env_prefix="KUBELAB_NOTHING", prog="test")
    with pytest.raises(SettingsError, match="etcd-cafile: an https:// etcd server needs the CA"):
        check_settings(no_ca)
    half = load(ApiServerSettings, [*flags, "--etcd-certfile", "/c.crt"], env_prefix="KUBELAB_NOTHING", prog="test")
    with pytest.raises(SettingsError, match="etcd-certfile and etcd-keyfile: give both"):
        check_settings(half)
    missing = load(
        ApiServerSettings, [*flags[:2], "--etcd-cafile", "/no/ca.crt"], env_prefix="KUBELAB_NOTHING", prog="test"
    )
    with pytest.raises(SettingsError, match=r"etcd-cafile: cannot read /no/ca\.crt"):
        etcd_tls(missing.etcd)
