"""The code's shape holds: no module of the host side, the agents or the testing package takes part
in an import cycle (import-linter's contracts in pyproject.toml keep the layers; this keeps the rest)."""

from __future__ import annotations

import grimp
import pytest


@pytest.mark.parametrize("package", ["provisioner", "agents", "kubelab_testing"])
def test_no_module_imports_itself_through_others(package: str) -> None:
    graph = grimp.build_graph(package, cache_dir=None)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join([importer, *back]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
