"""Field validation helpers shared by the kinds: names, labels, ports, IPs, quantities, selectors.

Messages follow Kubernetes' wording so that what kubectl prints reads as it would against
kube-apiserver.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agents.apiserver.status import FieldError, duplicate, invalid, not_supported, required, too_long
from agents.machinery import quantity
from agents.machinery.selectors import label_key_errors, valid_label_value

Errors = list[FieldError]

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_IANA = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start"
    " and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is"
    " '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must"
    " start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is"
    " '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic"
    " character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for"
    " validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


# --- names -----------------------------------------------------------------------------------------


def dns_label(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _LABEL.match(value):
        out.append(LABEL_MSG)
    return out


def dns_subdomain(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not _SUBDOMAIN.match(value):
        out.append(SUBDOMAIN_MSG)
    return out


def dns1035_label(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _DNS1035.match(value):
        out.append(DNS1035_MSG)
    return out


def path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


NameCheck = Callable[[str], list[str]]


def name_errors(path: str, value: str, check: NameCheck) -> Errors:
    return [invalid(path, value, msg) for msg in check(value)]


# --- labels, annotations, keys --------------------------------------------------------------------


def label_map(path: str, value: Mapping[str, Any] | None) -> Errors:
    out: Errors = []
    for key, val in (value or {}).items():
        out += [invalid(path, key, p) for p in label_key_errors(key)]
        if not isinstance(val, str) or not valid_label_value(val):
            out.append(
                invalid(
                    path,
                    val,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.',"
                    " and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or"
                    " '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
    return out


def annotation_map(path: str, value: Mapping[str, Any] | None) -> Errors:
    out: Errors = []
    total = 0
    for key, val in (value or {}).items():
        out += [invalid(path, key, p) for p in label_key_errors(key.lower())]
        total += len(key) + len(str(val))
    if total > 256 * 1024:
        out.append(too_long(path, 256 * 1024))
    return out


def qualified_name(path: str, value: str) -> Errors:
    return [invalid(path, value, p) for p in label_key_errors(value)]


def config_key(path: str, key: str) -> Errors:
    out: Errors = []
    if len(key) > 253:
        out.append(invalid(path, key, "must be no more than 253 characters"))
    if not _CONFIG_KEY.match(key):
        out.append(
            invalid(
                path,
                key,
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',"
                "  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            )
        )
    elif key in (".", ".."):
        out.append(invalid(path, key, f"must not be '{key}'"))
    return out


# --- numbers, ports, addresses ------------------------------------------------------------------


def non_negative(path: str, value: Any) -> Errors:
    if isinstance(value, int) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def positive(path: str, value: Any) -> Errors:
    if isinstance(value, int) and value <= 0:
        return [invalid(path, value, "must be greater than 0")]
    return []


def port_number(path: str, value: Any, *, allow_zero: bool = False) -> Errors:
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or not low <= value <= 65535:
        return [invalid(path, value, f"must be between {low} and 65535, inclusive")]
    return []


def iana_svc_name(value: str) -> list[str]:
    out = []
    if len(value) > 15:
        out.append("must be no more than 15 characters")
    if not _IANA.match(value):
        out.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        out.append("must not contain consecutive hyphens")
    if not re.search(r"[a-z]", value):
        out.append("must contain at least one letter (a-z)")
    return out


def port_name(path: str, value: str) -> Errors:
    return [invalid(path, value, msg) for msg in iana_svc_name(value)]


def int_or_name_port(path: str, value: Any) -> Errors:
    if isinstance(value, int):
        return port_number(path, value)
    if isinstance(value, str):
        if value.isdigit():
            return port_number(path, int(value))
        return port_name(path, value)
    return [invalid(path, value, "must be an integer or a port name")]


def protocol(path: str, value: Any) -> Errors:
    if value not in ("TCP", "UDP", "SCTP"):
        return [not_supported(path, value, ["SCTP", "TCP", "UDP"])]
    return []


def ip_address(path: str, value: Any) -> Errors:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def cidr(path: str, value: Any) -> Errors:
    try:
        ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        return [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


def one_of(path: str, value: Any, allowed: Iterable[str]) -> Errors:
    choices = allowed if isinstance(allowed, tuple | frozenset | set) else tuple(allowed)
    if value in choices:
        return []
    return [not_supported(path, value, sorted(choices))]


def int_or_percent(path: str, value: Any) -> Errors:
    if isinstance(value, int):
        return non_negative(path, value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]+%", value):
        return []
    return [invalid(path, value, "a valid percent string must be a numeric string followed by an ending '%'")]


def scaled(value: Any, total: int, *, round_up: bool) -> int:
    """An int-or-percent value against ``total``, as intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    percent = int(str(value).rstrip("%"))
    whole, rest = divmod(percent * total, 100)
    return whole + (1 if round_up and rest else 0)


def quantity_value(path: str, value: Any) -> Errors:
    try:
        amount = quantity.milli(value)
    except quantity.QuantityError as exc:
        return [invalid(path, value, str(exc))]
    if amount < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


# --- selectors -----------------------------------------------------------------------------------

_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_selector(path: str, selector: Mapping[str, Any] | None) -> Errors:
    if selector is None:
        return []
    out = label_map(f"{path}.matchLabels", selector.get("matchLabels"))
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        here = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = expr.get("values") or []
        out += one_of(f"{here}.operator", op, _SELECTOR_OPS)
        if op in ("In", "NotIn") and not values:
            out.append(required(f"{here}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        if op in ("Exists", "DoesNotExist") and values:
            out.append(
                FieldError(
                    "FieldValueForbidden",
                    f"{here}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
            )
        out += qualified_name(f"{here}.key", str(expr.get("key", "")))
    return out


def unique(path: str, items: Iterable[tuple[int, Any]], what: str) -> Errors:
    """Duplicate values among (index, value) pairs, reported at ``path[index].what``."""
    seen: set[Any] = set()
    out: Errors = []
    for index, value in items:
        if value in seen:
            out.append(duplicate(f"{path}[{index}].{what}", value))
        seen.add(value)
    return out
