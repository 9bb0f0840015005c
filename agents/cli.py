"""``kubelab-agent COMPONENT [flags]``: the one entry point of every node and control-plane service."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def _apiserver(argv: Sequence[str]) -> int:
    from agents.apiserver.__main__ import run  # noqa: PLC0415  (load only the component asked for)

    return run(argv)


def _scheduler(argv: Sequence[str]) -> int:
    from agents.scheduler.__main__ import run  # noqa: PLC0415

    return run(argv)


def _controller_manager(argv: Sequence[str]) -> int:
    from agents.controllers.__main__ import run  # noqa: PLC0415

    return run(argv)


def _cloud_controller_manager(argv: Sequence[str]) -> int:
    from agents.controllers.cloud.__main__ import run  # noqa: PLC0415

    return run(argv)


def _kubelet(argv: Sequence[str]) -> int:
    from agents.kubelet.__main__ import run  # noqa: PLC0415

    return run(argv)


def _proxy(argv: Sequence[str]) -> int:
    from agents.proxy.__main__ import run  # noqa: PLC0415

    return run(argv)


def _trace_collector(argv: Sequence[str]) -> int:
    from agents.collector.__main__ import run  # noqa: PLC0415

    return run(argv)


def _simnodes(argv: Sequence[str]) -> int:
    from agents.simnodes.__main__ import run  # noqa: PLC0415

    return run(argv)


COMPONENTS: dict[str, Callable[[Sequence[str]], int]] = {
    "apiserver": _apiserver,
    "scheduler": _scheduler,
    "controller-manager": _controller_manager,
    "cloud-controller-manager": _cloud_controller_manager,
    "kubelet": _kubelet,
    "proxy": _proxy,
    "simnodes": _simnodes,
    "trace-collector": _trace_collector,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: kubelab-agent {{{','.join(COMPONENTS)}}} [flags]   (each component has --help)")
        return 0 if args else 2
    component = COMPONENTS.get(args[0])
    if component is None:
        print(f"kubelab-agent: unknown component {args[0]!r}; choose from {', '.join(COMPONENTS)}", file=sys.stderr)
        return 2
    return component(args[1:])


if __name__ == "__main__":
    sys.exit(main())
