"""The API server under property-based fuzzing: schemathesis, fed with the OpenAPI documents the server
serves, against a local lab of its own (the fuzzer creates namespaces and nodes with names of its choosing,
which the session's lab should not carry into the other tests), every group for a short budget with a
fixed seed. ``make fuzz`` (benchmarks/fuzz.py) runs the same for longer, with a fresh seed."""

from __future__ import annotations

from pathlib import Path

from kubelab_testing import fuzzing
from provisioner.system.processes import ProcessRecord
from tests.integration.conftest import running_lab

SEED = 24
SECONDS_PER_GROUP = 10  # sixteen group-versions: about three minutes in all


def test_no_server_error_hang_or_answer_off_its_schema_and_untouched_namespaces_unchanged(tmp_path: Path) -> None:
    with running_lab(tmp_path / "home", "fuzz") as lab:
        api = fuzzing.Api.from_kubeconfig(lab.kubeconfig, tmp_path)
        record = ProcessRecord.load(lab.root / "run", "apiserver")
        assert record is not None
        report = fuzzing.run(
            api,
            seconds_per_group=SECONDS_PER_GROUP,
            seed=SEED,
            rss=lambda: fuzzing.tree_rss(record.pid),
            workdir=tmp_path,
        )
    assert report.clean, report.describe()
    assert len(report.groups) == 16 and all(g.requests >= 10 for g in report.groups), report.describe()
    assert report.rss_before > 0 and report.rss_after > 0
