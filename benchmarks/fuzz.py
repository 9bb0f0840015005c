"""``make fuzz``: the API server under property-based fuzzing, longer than the test ladder's run.

schemathesis, fed with the OpenAPI v3 documents the API server serves, sends generated requests to every
served group for ``--seconds-per-group`` each (150 by default), with a fresh seed unless ``--seed`` gives
one, against a fresh local lab (the control plane alone) on free ports, removed afterwards. Both checks run
on every answer: no server error, and the answer validates against the published schema; a request left
without an answer for 30 s is a hang. Afterwards the run checks that the API server is ready and that the
namespaces it did not touch are unchanged (``kubelab_testing.fuzzing`` says how the fuzzer is kept to its
own). It prints its figures and one JSON line (requests, groups, seed, server errors, hangs, the API
server's RSS before and after); it fails when the server erred, hung, answered off its schemas, or
touched what it should not have. Found problems are printed as schemathesis reports them, with a curl
line to reproduce each, and their seed reproduces the run.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from benchmarks.common import emit, settle
from kubelab_testing import fuzzing
from kubelab_testing.lab import created_lab, up_flags
from provisioner.system.processes import ProcessRecord


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds-per-group", type=float, default=150.0, help="time budget of each group")
    parser.add_argument("--seed", type=int, help="the fuzzer's seed (a fresh one by default)")
    parser.add_argument("--group", action="append", default=[], help="only this group's document, e.g. api/v1")
    parser.add_argument("--workers", type=int, default=2, help="requests the fuzzer has in flight")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    workdir = Path(tempfile.mkdtemp(prefix="kubelab-fuzz-"))
    print(f"fuzzing with seed {seed}; schemathesis' documents and reports go to {workdir}", flush=True)
    try:
        with created_lab("fuzz", up_flags("local")) as lab:
            settle()
            api = fuzzing.Api.from_kubeconfig(lab.kubeconfig, workdir)
            record = ProcessRecord.load(lab.root / "run", "apiserver")

            def rss() -> int:
                return fuzzing.tree_rss(record.pid) if record is not None else 0

            report = fuzzing.run(
                api,
                seconds_per_group=args.seconds_per_group,
                seed=seed,
                groups=args.group,
                rss=rss,
                workdir=workdir,
                workers=args.workers,
                progress=lambda line: print(line, flush=True),
            )
    except fuzzing.FuzzError as exc:
        print(f"fuzz: {exc}", file=sys.stderr)
        return 1
    print(report.describe(), flush=True)
    emit("fuzz", report.figures())
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
