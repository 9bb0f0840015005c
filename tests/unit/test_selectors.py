"""Label and field selector syntax and matching, as Kubernetes defines them."""

from __future__ import annotations

import pytest

from agents.machinery.selectors import (
    SelectorError,
    field_path_value,
    from_structured,
    parse_fields,
    parse_labels,
)

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("tier in (front,back)", True),
        ("tier in (back)", False),
        ("tier notin (back)", True),
        ("missing notin (x)", True),
        ("env", True),
        ("!env", False),
        ("!missing", True),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("app = web , tier in ( front )", True),
        ("", True),
    ],
)
def test_label_selector_syntax_and_matching(query: str, expected: bool) -> None:
    assert parse_labels(query).matches(LABELS) is expected


@pytest.mark.parametrize("query", ["app=", "app in ()", "=web", "app in (a", "a b", "Bad Key=x", "app=bad value!"])
def test_malformed_label_selectors_are_refused(query: str) -> None:
    if query == "app=":  # an empty value is allowed: it matches the label set to ""
        assert parse_labels(query).matches({"app": ""})
        return
    with pytest.raises(SelectorError):
        parse_labels(query)


def test_structured_selectors_match_like_their_query_form() -> None:
    selector = from_structured(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "canary": "1"})
    assert selector.render() == "app=web,tier in (front),!canary"
    assert from_structured(None).empty and from_structured({}).matches({})
    with pytest.raises(SelectorError):
        from_structured({"matchExpressions": [{"key": "a", "operator": "Near"}]})


def test_field_selectors_accept_only_supported_fields() -> None:
    selector = parse_fields("metadata.name=web,status.phase!=Failed", ["metadata.name", "status.phase"])
    obj = {"metadata": {"name": "web"}, "status": {"phase": "Running"}}
    assert selector.matches(lambda f: field_path_value(obj, f))
    assert selector.exact("metadata.name") == "web" and selector.exact("status.phase") is None
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.color"):
        parse_fields("spec.color=red", ["metadata.name"])


def test_field_values_render_as_strings() -> None:
    obj = {"spec": {"unschedulable": True, "replicas": 3}}
    assert field_path_value(obj, "spec.unschedulable") == "true"
    assert field_path_value(obj, "spec.replicas") == "3"
    assert field_path_value(obj, "spec.nodeName") == ""
