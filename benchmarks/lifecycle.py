"""Lifecycle under crashes and concurrency: a randomized run of ``--operations`` ``kubelab`` commands (up,
down, stop, start, fault) over ``--labs`` local labs in a KUBELAB_HOME of its own (``--node-labs`` of them
also run a real node: containerd, kubelet and proxy in a network namespace; the others the control plane
alone). Half of the single commands are SIGKILLed (after 1 to 12 output lines, or after 0.2 to 8 s); one
step in five runs two commands at once (two times in three on one lab). After every step the host is checked
against the labs' state (``kubelab_testing.lifecycle``, the same operations and checks as the integration
tier's stateful test), then every lab is removed.

Figures: operations run, kills, refusals (of which: the lab was busy), orphans found after the steps,
clobbered states (a lab's identity or settings changed by a command that may not change them), other
disagreements between the host and the labs, the longest silence of any command's output (from its start
to its first line, between two lines, or from its last line to its end), the slowest refusal of a busy
lab, each command's median and longest time, and the wall time. The goal (issue 26): 0 orphans,
0 clobbered states, no silence longer than 10 s; the exit code is 1 when it is not met.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import emit, percentile
from kubelab_testing.lifecycle import Fleet, random_step

LONGEST_SILENCE = 10.0  # seconds: the goal's bound on a command's silent wait


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--operations", type=int, default=200, help="kubelab commands to run (default 200)")
    parser.add_argument("--labs", type=int, default=3, help="local labs to run them on (default 3)")
    parser.add_argument("--node-labs", type=int, default=1, help="how many of the labs run a real node (default 1)")
    parser.add_argument("--seed", type=int, default=26, help="the random choices' seed (default 26)")
    args = parser.parse_args(argv)
    if args.operations < 1 or not 1 <= args.labs <= 26 or not 0 <= args.node_labs <= args.labs:
        parser.error("--operations must be at least 1, --labs between 1 and 26, --node-labs at most --labs")

    home = Path(tempfile.mkdtemp(prefix="kubelab-bench-lifecycle-"))
    names = [f"bl{uuid.uuid4().hex[:4]}{chr(ord('a') + i)}" for i in range(args.labs)]
    rng = random.Random(args.seed)
    fleet = Fleet(home, names, with_node=names[len(names) - args.node_labs :], seed=args.seed, say=print)
    problems: list[str] = []
    print(f"=== lifecycle: {args.operations} operations over labs {', '.join(names)} (seed {args.seed}, home {home})")
    began = time.monotonic()
    step = 0
    try:
        while fleet.tally.operations < args.operations:
            step += 1
            chosen = random_step(rng, names)
            print(f"step {step}: {' + '.join(str(s) for s in chosen)}", flush=True)
            found = fleet.run(chosen[0]) if len(chosen) == 1 else fleet.together(*chosen)
            found += fleet.check()
            for problem in found:
                print(f"  PROBLEM: {problem}", flush=True)
            problems += found
    finally:
        operations = fleet.tally.operations  # the run's own; the downs that remove the labs come after
        print("=== removing the labs", flush=True)
        left = fleet.clean()
        for problem in left:
            print(f"  PROBLEM: {problem}", flush=True)
        problems += left
        shutil.rmtree(home, ignore_errors=True)
    wall = time.monotonic() - began

    tally = fleet.tally
    by_command = {
        command: {"runs": len(times), "p50_s": round(percentile(times, 50), 2), "max_s": round(max(times), 2)}
        for command, times in sorted(tally.seconds_by_command.items())
    }
    print(f"{'COMMAND':<8} {'RUNS':>5} {'p50 s':>7} {'max s':>7}")
    for command, row in by_command.items():
        print(f"{command:<8} {row['runs']:>5} {row['p50_s']:>7.2f} {row['max_s']:>7.2f}")
    print(
        f"operations {operations} ({tally.concurrent} steps of two at once), kills {tally.kills},"
        f" refusals {tally.refusals} (busy {tally.busy}, slowest {tally.longest_refusal:.1f}s),"
        f" orphans {tally.orphans}, clobbered {tally.clobbered}, host/state disagreements {tally.violations},"
        f" longest silence {tally.longest_silence:.1f}s ({tally.longest_silence_of}), wall {wall:.0f}s"
    )
    met = tally.orphans == 0 and tally.clobbered == 0 and tally.longest_silence <= LONGEST_SILENCE and not problems
    emit(
        "lifecycle",
        {
            "operations": operations,
            "labs": args.labs,
            "node_labs": args.node_labs,
            "seed": args.seed,
            "steps": step,
            "concurrent_steps": tally.concurrent,
            "kills": tally.kills,
            "refusals": tally.refusals,
            "busy_refusals": tally.busy,
            "slowest_busy_refusal_s": round(tally.longest_refusal, 2),
            "orphans": tally.orphans,
            "clobbered": tally.clobbered,
            "problems": len(problems),
            "longest_silence_s": round(tally.longest_silence, 2),
            "longest_silence_of": tally.longest_silence_of,
            "by_command": by_command,
            "wall_s": round(wall, 1),
            "goal_met": met,
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
