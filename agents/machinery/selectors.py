"""Label and field selectors: parsing Kubernetes' selector syntax and matching objects.

Label selectors accept the full query syntax (``a=b,c!=d,e in (x,y),f notin (z),g,!h``) and the
structured ``LabelSelector`` form (matchLabels / matchExpressions). Field selectors accept
``=``, ``==`` and ``!=`` on the field labels each resource supports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.machinery.errors import KubelabError


class SelectorError(KubelabError):
    """A selector string or structure does not parse."""


_OPS = ("in", "notin", "=", "==", "!=", "exists", "!")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" match objects without the label too
        return not present or value not in self.values

    def render(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return "!" + self.key
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def render(self) -> str:
        return ",".join(r.render() for r in self.requirements)


_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip() == "":
                break
            raise SelectorError(f"unable to parse requirement: {text!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


def parse_labels(text: str) -> LabelSelector:
    """Parse a label selector query (``?labelSelector=``)."""
    tokens = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_key(tok: str) -> str:
        if tok in ("=", "==", "!=", "(", ")", ",", "!"):
            raise SelectorError(f"found '{tok}', expected: identifier")
        return tok

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            i += 1
            if i >= len(tokens):
                raise SelectorError("found end of input, expected: identifier after '!'")
            reqs.append(Requirement(expect_key(tokens[i]), "!exists"))
            i += 1
        else:
            key = expect_key(tok)
            i += 1
            op = tokens[i] if i < len(tokens) else ","
            if op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                if value:
                    i += 1
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            elif op in ("in", "notin"):
                i += 1
                if i >= len(tokens) or tokens[i] != "(":
                    raise SelectorError(f"found '{tokens[i] if i < len(tokens) else 'end'}', expected: '('")
                i += 1
                values: list[str] = []
                while i < len(tokens) and tokens[i] != ")":
                    if tokens[i] != ",":
                        values.append(tokens[i])
                    i += 1
                if i >= len(tokens):
                    raise SelectorError("found end of input, expected: ')'")
                i += 1
                if op == "in" and not values:
                    raise SelectorError(f"for 'in' operator, values set can't be empty (key {key})")
                reqs.append(Requirement(key, op, tuple(values)))
            else:
                raise SelectorError(f"found '{op}', expected: in, notin, =, ==, !=, ','")
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"found '{tokens[i]}', expected: ','")
            i += 1
    for req in reqs:
        check_label_key(req.key)
        for value in req.values:
            if not valid_label_value(value):
                raise SelectorError(f"invalid label value: {value!r}")
    return LabelSelector(tuple(reqs))


def from_structured(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` (matchLabels, matchExpressions)."""
    if not selector:
        return LabelSelector()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())))
    return LabelSelector(tuple(reqs))


# --- label syntax ------------------------------------------------------------------------------

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_key_errors(key: str) -> list[str]:
    """Problems with a label (or annotation) key, in Kubernetes' words."""
    problems: list[str] = []
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        problems.append("prefix part must be non-empty")
    if prefix:
        if len(prefix) > 253:
            problems.append("prefix part must be no more than 253 characters")
        elif not _DNS1123_SUBDOMAIN.match(prefix):
            problems.append(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,"
                " '-' or '.', and must start and end with an alphanumeric character"
            )
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _NAME.match(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with"
            " an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation"
            " is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return problems


def check_label_key(key: str) -> None:
    problems = label_key_errors(key)
    if problems:
        raise SelectorError(f"invalid label key {key!r}: {problems[0]}")


def valid_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and bool(_NAME.match(value)))


# --- field selectors ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, value_of: Callable[[str], str]) -> bool:
        for req in self.requirements:
            equal = value_of(req.field) == req.value
            if equal != (req.op == "="):
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value the selector pins ``field`` to with ``=``, if any."""
        for req in self.requirements:
            if req.field == field and req.op == "=":
                return req.value
        return None


def parse_fields(text: str, allowed: Sequence[str]) -> FieldSelector:
    reqs: list[FieldRequirement] = []
    for raw in _split_unescaped(text):
        part = raw.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                field, _, value = part.partition(op)
                break
        else:
            raise SelectorError(f"invalid selector: '{part}'; can't understand '{part}'")
        field = field.strip()
        if field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", _unescape(value.strip())))
    return FieldSelector(tuple(reqs))


def _split_unescaped(text: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def field_path_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted path in an object ('' if absent), as field selectors compare it."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
        if node is None:
            return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)
