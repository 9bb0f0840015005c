"""``kubelab trace KIND/NAME [-n NS]``: the timeline of the steps every component took for one object.

The object is read with the lab's admin credentials; its annotation ``tracing.kubelab.dev/traceparent``
names the trace the API server started when a user wrote it; the trace comes from the collector
through the API server's service proxy (``services/trace-collector:4318/proxy/...``), as any client
of the cluster would reach it. What goes wrong is one line: kube's own words for an object that is not
there, why an object carries no trace, which part of the way to the collector failed.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Iterator
from typing import Any, Protocol

import yaml

from provisioner.cli.lab import existing, say
from provisioner.lab import traceview
from provisioner.lab.apiclient import Answer, LabApi

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 503: "ServiceUnavailable"}


class Api(Protocol):
    """What the command asks of the lab's API server (:class:`LabApi`; a fake in tests)."""

    def ask(self, method: str, path: str, *, timeout: float = 5.0, body: Any = None) -> Answer: ...


class TraceError(Exception):
    """What ``kubelab trace`` could not do, in one line."""


def _server(kubeconfig: str, fallback: str) -> str:
    """The API server's URL in the lab's kubeconfig (the admin's), else ``fallback``."""
    try:
        with open(kubeconfig) as handle:
            return str(yaml.safe_load(handle)["clusters"][0]["cluster"]["server"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return fallback


def _from_server(answer: Answer) -> TraceError:
    """A failed answer as kubectl prints it: ``Error from server (NotFound): ...``."""
    if answer.code == 0:
        return TraceError(f"error: the lab's API server cannot be reached: {answer.error}")
    reason = REASONS.get(answer.code, f"HTTP {answer.code}")
    return TraceError(f"Error from server ({reason}): {answer.error}")


def _discovery(api: Api) -> Iterator[tuple[str, list[dict[str, object]]]]:
    """(group/version, its resources): the core group first, then each group's preferred version."""
    core = api.ask("GET", "/api/v1")
    if core.code != 200:
        raise _from_server(core)
    yield "v1", list(core.body.get("resources") or [])
    groups = api.ask("GET", "/apis")
    if groups.code != 200:
        raise _from_server(groups)
    for group in groups.body.get("groups") or []:
        preferred = str((group.get("preferredVersion") or {}).get("groupVersion") or "")
        if preferred:
            listed = api.ask("GET", f"/apis/{preferred}")
            if listed.code == 200:
                yield preferred, list(listed.body.get("resources") or [])


def resolve(api: Api, typed: str) -> traceview.Resource:
    for group_version, resources in _discovery(api):
        found = traceview.match_resource(typed, group_version, resources)
        if found is not None:
            return found
    raise TraceError(f'error: the server doesn\'t have a resource type "{typed}"')


def timeline(api: Api, typed: str, name: str, namespace: str) -> list[str]:
    resource = resolve(api, typed)
    got = api.ask("GET", resource.path(namespace, name))
    if got.code != 200:
        raise _from_server(got)
    what = f'{resource.qualified} "{name}"'
    annotations = (got.body.get("metadata") or {}).get("annotations") or {}
    traceparent = str(annotations.get(traceview.ANNOTATION) or "")
    trace_id = traceview.trace_id(traceparent)
    if not trace_id:
        why = "no" if not traceparent else f"an unreadable ({traceparent!r})"
        raise TraceError(
            f"{what} carries no trace: it has {why} annotation {traceview.ANNOTATION} (the API server adds it when a"
            " user creates or changes an object while tracing is on; objects written before that, or by a component,"
            " have none)"
        )
    answer = api.ask("GET", traceview.collector_path(f"/api/v1/traces/{urllib.parse.quote(trace_id)}"), timeout=10)
    if answer.code == 200:
        return traceview.render(answer.body, title=f"{what} in {namespace}" if resource.namespaced else what)
    service = f"{traceview.COLLECTOR_NAMESPACE}/{traceview.COLLECTOR_SERVICE}"
    if answer.code == 404 and answer.error.startswith(f'trace "{trace_id}"'):
        raise TraceError(
            f"trace {trace_id} of {what} is not in the trace collector: its spans are still on their way (the"
            " components send them every half second), or they were dropped (the collector keeps 2 hours of spans)"
        )
    if answer.code == 0:
        raise TraceError(f"error: the lab's API server cannot be reached: {answer.error}")
    raise TraceError(f"error: the trace collector (service {service}) cannot be reached: {answer.error}")


def run(args: argparse.Namespace) -> int:
    try:
        typed, name = traceview.parse_target(args.target)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    driver = existing(args.name)
    api = LabApi(_server(str(driver.paths.kubeconfig), f"https://127.0.0.1:{driver.spec.api_port}"), driver.paths)
    try:
        lines = timeline(api, typed, name, args.namespace)
    except TraceError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for line in lines:
        say(line)
    return 0
