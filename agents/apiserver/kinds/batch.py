"""Strategies for batch/v1: Jobs and CronJobs."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.kinds.podspec import default_pod_spec, validate_template
from agents.apiserver.status import invalid, required
from agents.apiserver.validation import Errors
from agents.machinery import cron
from agents.machinery.objects import Object

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"


def default_job_spec(spec: dict[str, Any]) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_spec(template.setdefault("spec", {}))


def validate_job_spec(path: str, spec: dict[str, Any] | None, *, check_selector: bool) -> Errors:
    if spec is None:
        return [required(path)]
    out: Errors = []
    for name in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        out += v.non_negative(f"{path}.{name}", spec.get(name))
    out += v.positive(f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"))
    out += v.one_of(f"{path}.completionMode", spec.get("completionMode", "NonIndexed"), ("Indexed", "NonIndexed"))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        out.append(required(f"{path}.completions", "when completion mode is Indexed"))
    selector = spec.get("selector") if check_selector else None
    if check_selector:
        if not selector:
            out.append(required(f"{path}.selector"))
        else:
            out += v.label_selector(f"{path}.selector", selector)
    out += validate_template(
        f"{path}.template", spec.get("template"), selector=selector, restart_policies=("OnFailure", "Never")
    )
    return out


class JobStrategy(Strategy):
    def default(self, obj: Object) -> None:
        default_job_spec(obj.setdefault("spec", {}))

    def prepare_create(self, obj: Object) -> None:
        super().prepare_create(obj)
        spec = obj.setdefault("spec", {})
        meta = obj["metadata"]
        if not spec.get("manualSelector") and not spec.get("selector"):
            uid, name = meta["uid"], meta.get("name", "")
            spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
            labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
            labels.update({CONTROLLER_UID: uid, JOB_NAME: name, LEGACY_CONTROLLER_UID: uid, LEGACY_JOB_NAME: name})
        if not meta.get("labels"):
            template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
            if template_labels:
                meta["labels"] = dict(template_labels)

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {}

    def validate(self, obj: Object) -> Errors:
        return validate_job_spec("spec", obj.get("spec"), check_selector=True)

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        for name in ("selector", "template", "completionMode"):
            if new_spec.get(name) != old_spec.get(name):
                out.append(
                    invalid(
                        f"spec.{name}",
                        "<omitted>" if name == "template" else new_spec.get(name),
                        "field is immutable",
                    )
                )
        if new_spec.get("completions") != old_spec.get("completions") and new_spec.get("completionMode") != "Indexed":
            out.append(invalid("spec.completions", new_spec.get("completions"), "field is immutable"))
        return out


class CronJobStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_spec = (spec.get("jobTemplate") or {}).get("spec")
        if isinstance(job_spec, dict):
            template = job_spec.get("template")
            if isinstance(template, dict):
                default_pod_spec(template.setdefault("spec", {}))

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {}

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        out: Errors = []
        name = (obj.get("metadata") or {}).get("name", "")
        if len(name) > 52:
            out.append(invalid("metadata.name", name, "must be no more than 52 characters"))
        schedule = spec.get("schedule")
        if not schedule:
            out.append(required("spec.schedule"))
        else:
            try:
                cron.parse(schedule)
            except cron.CronError as exc:
                out.append(invalid("spec.schedule", schedule, str(exc)))
        zone = spec.get("timeZone")
        if zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                out.append(invalid("spec.timeZone", zone, "unknown time zone " + zone))
        out += v.one_of(
            "spec.concurrencyPolicy", spec.get("concurrencyPolicy", "Allow"), ("Allow", "Forbid", "Replace")
        )
        for field in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
            out += v.non_negative(f"spec.{field}", spec.get(field))
        job_template = spec.get("jobTemplate")
        if job_template is None:
            out.append(required("spec.jobTemplate"))
        else:
            out += validate_job_spec("spec.jobTemplate.spec", job_template.get("spec"), check_selector=False)
        return out
