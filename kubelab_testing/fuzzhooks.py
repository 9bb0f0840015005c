"""schemathesis hooks of a fuzz run (``kubelab_testing.fuzzing``), loaded by the fuzzer's own process.

The documents keep the fuzzer's path parameters to its own namespaces, but a fuzzer also sends values it
read in answers (the stateful phase follows links: a namespace name seen in a list) and values outside the
schema (the negative mode). So, right before each request, every path parameter that names a namespace the
run must leave alone (listed in ``PROTECTED_ENV``, the system namespaces and the run's sentinel) is
replaced: by one of the run's own namespaces (``OWN_ENV``) where the parameter is a namespace, by a
``fuzz-`` name otherwise. Nothing else of a request is changed.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

PROTECTED_ENV = "KUBELAB_FUZZ_PROTECTED"  # comma-separated namespaces the run must not touch
OWN_ENV = "KUBELAB_FUZZ_OWN"  # comma-separated namespaces of the run's own


def _names(variable: str) -> tuple[str, ...]:
    return tuple(name for name in os.environ.get(variable, "").split(",") if name)


def kept_away(parameters: dict[str, Any], protected: tuple[str, ...], own: tuple[str, ...]) -> dict[str, Any]:
    """``parameters`` with every value that names (or holds) a protected namespace replaced."""
    out = dict(parameters)
    for key, value in parameters.items():
        text = str(value)
        if any(name in text for name in protected):
            out[key] = own[0] if key == "namespace" and own else f"fuzz-{key}"
    return out


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: Any, kwargs: dict[str, Any]) -> None:
    protected, own = _names(PROTECTED_ENV), _names(OWN_ENV)
    if protected and case.path_parameters:
        case.path_parameters = kept_away(dict(case.path_parameters), protected, own)
