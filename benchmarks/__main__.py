"""``make bench``: run every benchmark in turn."""

from __future__ import annotations

import sys

from benchmarks import apiserver, dashboard, dns, faults, lifecycle, node, podstartup, proxy, scheduler, vmlab, volumes


def main() -> int:
    status = 0
    for bench in (apiserver, scheduler, podstartup, node, proxy, dns, dashboard, vmlab, volumes, faults, lifecycle):
        print(f"=== {bench.__name__}", flush=True)
        status |= bench.main([])
    return status


if __name__ == "__main__":
    sys.exit(main())
