"""What ``kubelab trace KIND/NAME`` works out without I/O: which API resource KIND names, which trace an
object carries, the collector's path through the API server's service proxy, and the timeline printed.

The timeline is one line per span, sorted by start, indented under its parent (a span whose parent is
not in the trace starts at the left), with its offset from the trace's first span, its duration, the
component that recorded it, its name and attributes; the span's events (the scheduler's "filtered
out" nodes, the kubelet's "ready") follow it, each on a line of its own at its own offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ANNOTATION = "tracing.kubelab.dev/traceparent"
COLLECTOR_NAMESPACE = "kube-system"
COLLECTOR_SERVICE = "trace-collector"
COLLECTOR_PORT = 4318
# attributes every span of an object repeats, which the line above already says
QUIET_ATTRIBUTES = frozenset({"k8s.object.uid", "k8s.object.kind"})


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def qualified(self) -> str:
        """As kube names it in messages: ``deployments.apps``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str, name: str) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{base}{scope}/{self.plural}/{name}"


def parse_target(text: str) -> tuple[str, str]:
    """``KIND/NAME`` -> (kind as typed, name); ValueError in kubectl's words otherwise."""
    kind, slash, name = text.partition("/")
    if not slash or not kind or not name or "/" in name:
        raise ValueError(f'arguments in resource/name form must have a single resource and name: "{text}"')
    return kind, name


def match_resource(typed: str, group_version: str, resources: Iterable[Mapping[str, Any]]) -> Resource | None:
    """The resource of one discovery list (``/api/v1``, ``/apis/GROUP/VERSION``) that ``typed`` names:
    its plural, singular, kind or a short name, any case, optionally followed by ``.GROUP``."""
    group, _, version = group_version.rpartition("/")
    word = typed.lower()
    if group and word.endswith(f".{group}"):
        word = word[: -len(group) - 1]
    elif "." in word:
        return None
    for item in resources:
        plural = str(item.get("name") or "")
        if not plural or "/" in plural:  # subresources are not objects
            continue
        names = {plural, str(item.get("singularName") or ""), str(item.get("kind") or "").lower()}
        names |= {str(s) for s in item.get("shortNames") or []}
        if word in names:
            return Resource(group, version, plural, str(item.get("kind") or ""), bool(item.get("namespaced")))
    return None


def trace_id(traceparent: str) -> str:
    """The trace id of a W3C ``traceparent`` (``00-TRACEID-SPANID-FLAGS``), or "" when it has none."""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32:
        return ""
    try:
        int(parts[1], 16)
    except ValueError:
        return ""
    return parts[1].lower() if parts[1].strip("0") else ""


def collector_path(path: str) -> str:
    """A path of the collector's API as the API server's service proxy reaches it."""
    return (
        f"/api/v1/namespaces/{COLLECTOR_NAMESPACE}/services/{COLLECTOR_SERVICE}:{COLLECTOR_PORT}/proxy"
        + "/"
        + path.lstrip("/")
    )


def duration(nanoseconds: int) -> str:
    seconds = max(0, nanoseconds) / 1e9
    if seconds >= 1:
        return f"{seconds:.2f}s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds * 1000:.1f}ms"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_value(v) for v in value) + "]"
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def attributes(found: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in found.items() if key not in QUIET_ATTRIBUTES)


def _depths(spans: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Each span's depth under the spans of the trace (a missing parent counts as none)."""
    parents = {str(s["spanId"]): str(s.get("parentSpanId") or "") for s in spans}
    depths: dict[str, int] = {}
    for span_id, parent in parents.items():
        depth, seen, current = 0, {span_id}, parent
        while current in parents and current not in seen:
            seen.add(current)
            depth += 1
            current = parents[current]
        depths[span_id] = depth
    return depths


def _components(spans: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Each span's component: its service, with the instance when several instances of that service
    appear in the trace (the proxies of two nodes)."""
    instances: dict[str, set[str]] = {}
    for span in spans:
        instances.setdefault(str(span.get("service") or ""), set()).add(str(span.get("instance") or ""))
    out = {}
    for span in spans:
        service, instance = str(span.get("service") or "?"), str(span.get("instance") or "")
        several = len(instances.get(service, set())) > 1 and instance
        out[str(span["spanId"])] = f"{service}@{instance}" if several else service
    return out


def render(trace: Mapping[str, Any], *, title: str = "") -> list[str]:
    """The timeline of a trace as the collector answers it (``{"traceId", "spans": [...]}``)."""
    spans = list(trace.get("spans") or [])
    depths = _depths(spans)
    # a parent before its children even when the clock gives both the same start
    spans.sort(key=lambda s: (int(s["start"]), depths[str(s["spanId"])]))
    if not spans:
        return [f"trace {trace.get('traceId', '')}: no spans"]
    began = int(spans[0]["start"])
    ended = max(int(s["end"]) for s in spans)
    services = sorted({str(s.get("service") or "?") for s in spans})
    head = f"trace {trace.get('traceId', '')}" + (f" of {title}" if title else "")
    lines = [
        f"{head}: {len(spans)} spans over {duration(ended - began)} ({', '.join(services)})",
        f"{'OFFSET':>9} {'DURATION':>8}  {'COMPONENT':<20} SPAN",
    ]
    components = _components(spans)
    for span in spans:
        span_id = str(span["spanId"])
        indent = "  " * depths[span_id]
        offset = f"+{(int(span['start']) - began) / 1e9:.3f}s"
        text = f"{indent}{span['name']}"
        described = attributes(span.get("attributes") or {})
        if described:
            text += f"  {described}"
        status = span.get("status") or {}
        if status.get("code") == "ERROR":
            text += f"  ERROR: {status.get('message') or 'failed'}"
        took = duration(int(span["end"]) - int(span["start"]))
        lines.append(f"{offset:>9} {took:>8}  {components[span_id]:<20} {text}")
        for event in span.get("events") or []:
            at = f"+{(int(event['time']) - began) / 1e9:.3f}s"
            said = attributes(event.get("attributes") or {})
            lines.append(f"{at:>9} {'':>8}  {'':<20} {indent}  * {event['name']}" + (f"  {said}" if said else ""))
    return lines
