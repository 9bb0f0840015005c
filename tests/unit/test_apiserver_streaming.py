"""The API server's routing of pods/attach and pods/portforward: the operations they are, the
parameters each decodes, the verbs discovery gives them, and which upgrade each passes to kubelets."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from agents.apiserver.decoding import decode_query
from agents.apiserver.handlers import operation_of
from agents.apiserver.kubeletclient import STREAM_PROTOCOLS, stream_versions
from agents.apiserver.resources import SUBRESOURCE_VERBS
from agents.apiserver.status import StatusError


def query_of(text: str) -> Any:
    return make_mocked_request("GET", f"/?{text}").query


@pytest.mark.parametrize("subresource", ["attach", "portforward"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_attach_and_portforward_answer_get_and_post_as_their_own_operation(method: str, subresource: str) -> None:
    assert operation_of(method, "web", subresource) == subresource
    assert SUBRESOURCE_VERBS[subresource] == ("create", "get")


@pytest.mark.parametrize("subresource", ["attach", "portforward"])
def test_other_methods_are_not_allowed(subresource: str) -> None:
    with pytest.raises(StatusError) as caught:
        operation_of("DELETE", "web", subresource)
    assert caught.value.code == 405


def test_attach_options_are_decoded_as_kubes_pod_attach_options() -> None:
    query = decode_query("attach", query_of("container=main&stdin=true&stdout=true&tty=false&x=y"))
    assert query.text("container") == "main"
    assert query.flag("stdin") is True and query.flag("tty") is False
    assert "x" not in query.values


def test_portforward_ports_are_a_list() -> None:
    query = decode_query("portforward", query_of("ports=8080&ports=53"))
    assert query.texts("ports") == ("8080", "53")


def test_port_forward_passes_kubectls_tunnel_and_the_python_clients_channels_and_a_spdy_upgrade() -> None:
    assert STREAM_PROTOCOLS["portforward"] == (
        "SPDY/3.1+portforward.k8s.io",
        "v4.channel.k8s.io",
        "portforward.k8s.io",
    )
    assert STREAM_PROTOCOLS["attach"] == STREAM_PROTOCOLS["exec"] == ("v5.channel.k8s.io", "v4.channel.k8s.io")


def spdy_request(*versions: str) -> Any:
    headers = [("Upgrade", "SPDY/3.1")] + [("X-Stream-Protocol-Version", v) for v in versions]
    return make_mocked_request("POST", "/", headers=headers)


def test_a_spdy_upgrade_passes_every_version_the_client_offers_in_its_order() -> None:
    offered = spdy_request("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io")
    assert stream_versions(offered, "exec") == ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"]
    assert stream_versions(spdy_request("v5.channel.k8s.io, v4.channel.k8s.io"), "attach") == [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
    ]


def test_port_forward_over_spdy_names_its_protocol_when_the_client_does_not() -> None:
    assert stream_versions(spdy_request(), "portforward") == ["portforward.k8s.io"]
    assert stream_versions(spdy_request(), "exec") == []
