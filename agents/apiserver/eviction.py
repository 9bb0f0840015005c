"""The ``pods/NAME/eviction`` subresource: a pod deleted only if its disruption budget allows it.

``kubectl drain`` posts a policy/v1 Eviction for each pod of the node instead of deleting it. As kube's
eviction REST does, a pod that no longer counts against any budget (terminal, still Pending, or already
being deleted) is deleted at once; so is a pod no budget selects. Otherwise the one budget that selects
it must allow a disruption: its status is checked and spent in one compare-and-swap write (one
disruption less, the pod named in ``disruptedPods`` so that the disruption controller does not count it
healthy while it goes away), and only then is the pod deleted. A budget that forbids it answers 429
TooManyRequests, which clients retry; more than one budget is a 500, as in kube. An unready pod may go
without spending the budget while enough healthy pods remain (or always, with the ``AlwaysAllow``
unhealthy-pod policy), under a resourceVersion precondition so that it cannot turn ready meanwhile.

The decisions are pure (:func:`plan`, :func:`spend`); :func:`evict` reads and writes through the stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from agents.apiserver.registry import DeleteOptions, ListOptions, ResourceStore
from agents.apiserver.status import StatusError, bad_request
from agents.machinery import objects
from agents.machinery.objects import Object
from agents.machinery.selectors import SelectorError, from_structured

CAUSE = "DisruptionBudget"  # the cause type kube's policy/v1 names (DisruptionBudgetCause)
CONDITION = "DisruptionAllowed"
MAX_DISRUPTED_PODS = 2000  # kube's MaxDisruptedPodSize: evictions the controller has not confirmed yet
BUDGET_RETRIES = 5  # re-reads of a budget whose status another writer changed meanwhile
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
MANY_BUDGETS = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."


def success(code: int = 201) -> Object:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}


def failure(code: int, message: str) -> Object:
    """A failure kube's eviction returns as its answer rather than as an error: a Status with no reason."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "code": code}


def too_many_requests(cause: str) -> StatusError:
    return StatusError(429, "TooManyRequests", VIOLATION, details={"causes": [{"reason": CAUSE, "message": cause}]})


def is_ready(pod: Object) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ignores_budgets(pod: Object) -> bool:
    """A pod whose eviction disrupts nothing more: terminal, not yet running, or already going."""
    phase = (pod.get("status") or {}).get("phase", "Pending")
    return phase in ("Succeeded", "Failed", "Pending") or bool(objects.meta(pod).get("deletionTimestamp"))


def selects(pdb: Object, pod: Object) -> bool:
    """policy/v1 semantics: an empty selector selects every pod of the namespace, a missing one none."""
    selector = (pdb.get("spec") or {}).get("selector")
    if selector is None:
        return False
    try:
        return from_structured(selector).matches(objects.meta(pod).get("labels") or {})
    except SelectorError:
        return False


@dataclass(frozen=True)
class Plan:
    """What an eviction does before deleting the pod: spend a disruption of ``budget``, or delete the pod
    without spending any, then only the version looked at (``pin_version``)."""

    budget: Object | None = None  # the one budget that selects the pod
    spend: bool = False
    pin_version: bool = False
    several: bool = False  # more than one budget selects the pod: kube's eviction refuses (500)


def plan(pod: Object, budgets: list[Object]) -> Plan:
    """How to evict ``pod``, given the budgets of its namespace."""
    if ignores_budgets(pod):
        phase = (pod.get("status") or {}).get("phase", "Pending")
        return Plan(pin_version=phase not in ("Succeeded", "Failed"))
    matching = [b for b in budgets if selects(b, pod)]
    if not matching:
        return Plan()
    if len(matching) > 1:
        return Plan(several=True)
    budget = matching[0]
    if not is_ready(pod):
        spec, status = budget.get("spec") or {}, budget.get("status") or {}
        healthy, desired = int(status.get("currentHealthy", 0)), int(status.get("desiredHealthy", 0))
        if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow" or healthy >= desired > 0:
            return Plan(budget=budget, pin_version=True)
    return Plan(budget=budget, spend=True)


def spend(budget: Object, pod_name: str, *, now: datetime, dry_run: bool) -> Object:
    """``budget`` with one disruption spent on ``pod_name`` (kube's checkAndDecrement), or the 429/403."""
    name = str(objects.meta(budget).get("name", ""))
    status: dict[str, Any] = dict(budget.get("status") or {})
    generation = int(objects.meta(budget).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        raise too_many_requests(_processing(budget))
    allowed = int(status.get("disruptionsAllowed", 0))
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    disrupted = dict(status.get("disruptedPods") or {})
    if len(disrupted) > MAX_DISRUPTED_PODS:
        raise _forbidden(name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise too_many_requests(
            f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy pods"
            f" and has {status.get('currentHealthy', 0)} currently"
        )
    status["disruptionsAllowed"] = allowed - 1
    if allowed == 1:
        status["conditions"] = _insufficient(status.get("conditions") or [], budget, now)
    if not dry_run:
        disrupted[pod_name] = _stamp(now)
        status["disruptedPods"] = disrupted
    return {**budget, "status": status}


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _forbidden(name: str, message: str) -> StatusError:
    return StatusError(
        403,
        "Forbidden",
        f'poddisruptionbudget.policy "{name}" is forbidden: {message}',
        details={"name": name, "group": "policy", "kind": "poddisruptionbudget"},
    )


def _insufficient(conditions: list[dict[str, Any]], budget: Object, now: datetime) -> list[dict[str, Any]]:
    """The DisruptionAllowed condition turned False (InsufficientPods) once the last disruption is spent."""
    current = next((c for c in conditions if c.get("type") == CONDITION), None)
    if current is not None and current.get("status") == "False" and current.get("reason") == "InsufficientPods":
        return conditions
    changed = current is None or current.get("status") != "False"
    condition = {
        "type": CONDITION,
        "status": "False",
        "reason": "InsufficientPods",
        "message": "",
        "observedGeneration": (budget.get("status") or {}).get("observedGeneration", 0),
        "lastTransitionTime": _stamp(now) if changed else (current or {}).get("lastTransitionTime", _stamp(now)),
    }
    return [*(c for c in conditions if c.get("type") != CONDITION), condition]


def delete_options(eviction: Object, *, dry_run: bool) -> DeleteOptions:
    """The DeleteOptions an Eviction carries, as the registry takes them."""
    given: dict[str, Any] = eviction.get("deleteOptions") or {}
    preconditions = given.get("preconditions") or {}
    propagation = str(given.get("propagationPolicy") or "")
    if not propagation and given.get("orphanDependents") is not None:
        propagation = "Orphan" if given["orphanDependents"] else "Background"
    if propagation not in ("", "Orphan", "Foreground", "Background"):
        raise bad_request(
            f'propagationPolicy: Unsupported value: "{propagation}": supported values:'
            ' "Foreground", "Background", "Orphan"'
        )
    for value in given.get("dryRun") or []:
        if value != "All":
            raise bad_request(f'Invalid dryRun value "{value}": only "All" is supported')
    return DeleteOptions(
        given.get("gracePeriodSeconds"),
        propagation,
        preconditions.get("uid"),
        preconditions.get("resourceVersion"),
        dry_run or given.get("dryRun") == ["All"],
    )


async def evict(
    *, pods: ResourceStore, budgets: ResourceStore, namespace: str, name: str, eviction: Object, dry_run: bool
) -> Object:
    """Evict pod ``namespace/name`` as ``eviction`` asks; the Status to answer with, its ``code`` the
    HTTP status (201 Success)."""
    if str(objects.meta(eviction).get("name", "")) != name:
        raise bad_request("name in URL does not match name in Eviction object")
    asked = delete_options(eviction, dry_run=dry_run)
    for _ in range(BUDGET_RETRIES):
        pod = (await pods.get(namespace, name)).obj()
        listed = await budgets.list(namespace, ListOptions())
        decided = plan(pod, [b.obj() for b in listed.items])
        if decided.several:
            return failure(500, MANY_BUDGETS)
        if decided.spend and decided.budget is not None:
            await _spend(budgets, namespace, decided.budget, name, dry_run=asked.dry_run)
        options = asked
        if decided.pin_version and asked.resource_version is None:
            version = str(objects.meta(pod).get("resourceVersion", ""))
            options = DeleteOptions(asked.grace_period, asked.propagation, asked.uid, version, asked.dry_run)
        try:
            await pods.delete(namespace, name, options)
        except StatusError as exc:
            if exc.code == 404:
                return success()  # gone meanwhile: what the eviction wanted
            if exc.code != 409 or options is asked:
                raise
            if decided.budget is not None:  # an unready pod that may have turned ready: the client retries
                raise too_many_requests(_processing(decided.budget)) from exc
            continue  # a pod not yet running changed: look again
        return success()
    raise too_many_requests(f"pod {name} kept changing during its eviction")


def _processing(budget: Object) -> str:
    return f"The disruption budget {objects.meta(budget).get('name', '')} is still being processed by the server."


def _replaced_by(wanted: Object, _current: Object) -> Object:
    return wanted


async def _spend(store: ResourceStore, namespace: str, budget: Object, pod_name: str, *, dry_run: bool) -> None:
    """Spend one disruption of ``budget`` in one compare-and-swap write of its status; re-read on a race."""
    name = str(objects.meta(budget).get("name", ""))
    for _ in range(BUDGET_RETRIES):
        spent = spend(budget, pod_name, now=datetime.now(UTC), dry_run=dry_run)
        try:
            await store.update(namespace, name, partial(_replaced_by, spent), subresource="status", dry_run=dry_run)
            return
        except StatusError as exc:
            if exc.code != 409:
                raise
        budget = (await store.get(namespace, name)).obj()
    raise too_many_requests(_processing(budget))
