"""The API server's spans: which requests are traced, and what their spans are named and carry.

The API server's part of the contract in :mod:`agents.machinery.tracing`: a request is traced when it
continues a trace (a ``traceparent`` header), or when it is a user's write of a main resource (a new
trace starts there; the components continue it from the annotation the stored object carries).
Leases and Events are never traced: they are the heartbeat and the chatter of the components, not
steps of a change a user asked for.

The request's span (kind SERVER) is started by the server's middleware once authentication has said
who sent the request, so authentication's own span is recorded after the fact from its start and
end; the other steps (authorization, admission, validation, the etcd write) are children recorded as
they run, through :func:`step`. The deciding and naming functions are pure; everything here costs a
check of :func:`tracing.enabled` when tracing is off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind

from agents.apiserver.requestinfo import RequestInfo
from agents.machinery import tracing

TRACER = "apiserver"
# the request's key for when authentication started and ended (unix ns), kept for its span
AUTHENTICATED: web.RequestKey[tuple[int, int]] = web.RequestKey("kubelab.tracing.authenticated", tuple)

WRITES = frozenset({"create", "update", "patch", "delete"})
NEVER_TRACED = frozenset({("coordination.k8s.io", "leases"), ("", "events"), ("events.k8s.io", "events")})
SYSTEM_PREFIX = "system:"

# The admission plugins (kube's names) the admission step runs for a resource and operation: what the
# strategies' admit_create/admit_update hooks (kinds/) and the namespace check of a create do.
ADMISSION_PLUGINS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("pods", "create"): ("ServiceAccount", "Priority", "DefaultTolerationSeconds"),
    ("ingresses.networking.k8s.io", "create"): ("DefaultIngressClass",),
    ("persistentvolumes", "create"): ("StorageObjectInUseProtection",),
    ("persistentvolumeclaims", "create"): ("DefaultStorageClass", "StorageObjectInUseProtection"),
    ("persistentvolumeclaims", "update"): ("PersistentVolumeClaimResize",),
}

_NOTHING: contextlib.nullcontext[Span] = contextlib.nullcontext(INVALID_SPAN)


def traced(info: RequestInfo, *, user: str, continued: bool, dry_run: bool = False) -> bool:
    """Whether a request gets a span: one that continues a trace (``continued``), except a watch; or a
    user's (not a ``system:`` component's) write of a main resource, or of its scale (``kubectl
    scale`` changes the spec), that really writes. Never a Lease's or an Event's, nor a request that
    names no resource."""
    if not info.resource_request or (info.api_group, info.resource) in NEVER_TRACED:
        return False
    if continued:
        return info.verb != "watch"
    spec = info.subresource in ("", "scale")
    return info.verb in WRITES and spec and not dry_run and not user.startswith(SYSTEM_PREFIX)


def span_name(info: RequestInfo) -> str:
    """``<verb> <resource>[/<subresource>]``, as kube names what a request does: "create deployments"."""
    resource = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    return f"{info.verb} {resource}"


def request_attributes(info: RequestInfo, *, method: str, user: str) -> dict[str, str]:
    """The attributes of a request's span (the empty ones left out)."""
    found = {
        "http.request.method": method,
        "url.path": info.path,
        "user.name": user,
        "k8s.namespace.name": info.namespace,
        "k8s.object.name": info.name,
    }
    return {key: value for key, value in found.items() if value}


def answer_attributes(answer: Any) -> dict[str, str]:
    """What the answer adds to the span of a request that did not name its object (a create): the
    object's name and UID."""
    meta = answer.get("metadata") if isinstance(answer, Mapping) else None
    if not isinstance(meta, Mapping):
        return {}
    found = {"k8s.object.name": meta.get("name"), "k8s.object.uid": meta.get("uid")}
    return {key: str(value) for key, value in found.items() if isinstance(value, str) and value}


def failure_message(code: int, answer: Any) -> str:
    """The message a refused request's span carries: the Status's, as the client reads it."""
    message = answer.get("message") if isinstance(answer, Mapping) else None
    return str(message) if message else f"HTTP {code}"


def authorization_attributes(*, allowed_by: str, refusal: str) -> dict[str, str]:
    """The decision, in kube's words (allow, forbid), and why: what allowed it, or the refusal."""
    if refusal:
        return {"authorization.decision": "forbid", "authorization.reason": refusal}
    return {"authorization.decision": "allow", "authorization.reason": f"allowed by {allowed_by}"}


def decided(span: Span, *, allowed_by: str, refusal: str) -> None:
    """Authorization's span says what it decided; a refusal fails it with kube's message."""
    span.set_attributes(authorization_attributes(allowed_by=allowed_by, refusal=refusal))
    if refusal:
        tracing.fail(span, refusal)


def reads_answer(info: RequestInfo, code: int) -> bool:
    """Whether the request's span needs the answer: a refusal's message, or the name a create chose."""
    return code >= 400 or (info.verb == "create" and not info.name)


def answered(span: Span, code: int, answer: Any) -> None:
    """What the answer adds to the request's span: a refusal's message (status ERROR), or the name and
    UID of the object created."""
    if code >= 400:
        tracing.fail(span, failure_message(code, answer))
    else:
        span.set_attributes(answer_attributes(answer))


def admission_plugins(resource: str, operation: str, *, namespaced: bool) -> list[str]:
    """The admission plugins a create or update of ``resource`` (its qualified plural) runs."""
    lifecycle = ["NamespaceLifecycle"] if namespaced and operation == "create" else []
    return [*lifecycle, *ADMISSION_PLUGINS.get((resource, operation), ())]


def start(
    info: RequestInfo,
    *,
    method: str,
    user: str,
    parent: otel_context.Context | None,
    started: int,
    authenticated: tuple[int, int] | None,
) -> Span:
    """The request's span (not yet current), continuing ``parent`` or starting a trace, from
    ``started``; with authentication's span when ``authenticated`` gives its start and end."""
    tracer = tracing.tracer(TRACER)
    span = tracer.start_span(
        span_name(info),
        context=parent if parent is not None else otel_context.Context(),
        kind=SpanKind.SERVER,
        attributes=request_attributes(info, method=method, user=user),
        start_time=started,
    )
    if authenticated is not None:
        child = tracer.start_span(
            "authentication", context=trace.set_span_in_context(span), start_time=authenticated[0]
        )
        child.end(end_time=authenticated[1])
    return span


def record_unauthenticated(
    info: RequestInfo, *, method: str, parent: otel_context.Context, started: int, message: str
) -> None:
    """A request refused for its credentials that continued a trace: its span and authentication's,
    both failed, recorded after the fact."""
    span = start(info, method=method, user="", parent=parent, started=started, authenticated=None)
    child = tracing.tracer(TRACER).start_span(
        "authentication", context=trace.set_span_in_context(span), start_time=started
    )
    tracing.fail(child, message)
    child.end()
    tracing.fail(span, message)
    span.end()


@contextlib.contextmanager
def current(span: Span) -> Iterator[Span]:
    """``span`` current inside the block (the steps are its children), ended at its end."""
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


def step(name: str) -> contextlib.AbstractContextManager[Span]:
    """A child of the request's span for one step of its handling; with tracing off, a shared block
    that records nothing (no span object is made); in a request not traced, one that records nothing."""
    if not tracing.enabled():
        return _NOTHING
    return tracing.child(name, tracer_name=TRACER)


def admission(resource: str, operation: str, *, namespaced: bool) -> contextlib.AbstractContextManager[Span]:
    """The admission step of a create or update, naming the plugins it runs."""
    if not tracing.enabled():
        return _NOTHING
    plugins = admission_plugins(resource, operation, namespaced=namespaced)
    return tracing.child("admission", tracer_name=TRACER, attributes={"admission.plugins": plugins})


def etcd_write(key: str) -> contextlib.AbstractContextManager[Span]:
    """The write to etcd of one key; the block adds the revision it wrote (``etcd.revision``)."""
    if not tracing.enabled():
        return _NOTHING
    return tracing.child("etcd write", tracer_name=TRACER, attributes={"etcd.key": key})


def keep(new: MutableMapping[str, Any], old: Mapping[str, Any]) -> None:
    """An update's new object keeps the trace the stored one carries when its body left the annotation
    out (a write outside any trace does not drop the trace a user's write started); before the update is
    compared with the stored object, so that leaving it out alone changes nothing."""
    if not tracing.enabled():
        return
    kept = tracing.traceparent(old)
    if kept and not tracing.traceparent(new):
        meta = new.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), tracing.ANNOTATION: kept}


def stamp(new: MutableMapping[str, Any]) -> None:
    """Before a write of a main resource is stored (and only when it changes the object, so that a
    component's no-op write inside a trace cannot start a loop of writes): the request's span into the
    object's annotation, when the request is traced."""
    if tracing.enabled():
        tracing.stamp(new)
