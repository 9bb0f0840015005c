"""``kubectl cp`` both ways with a real node: kubectl runs ``tar`` in the container through exec, and
the end of its stdin (v5's close message) must reach tar for a copy into the pod to finish. A file and
a directory go in and come back out unchanged (the busybox image has tar)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab_testing.kubectl import Kubectl, running_pod


@pytest.fixture(scope="module")
def box(node_kubectl: Kubectl) -> Iterator[str]:
    """``NAMESPACE/box``: a running pod to copy into and out of."""
    with running_pod(
        node_kubectl, "box", {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}, prefix="cp"
    ) as ns:
        yield f"{ns}/box"


def test_a_file_is_copied_into_the_pod_and_back(node_kubectl: Kubectl, box: str, tmp_path: Path) -> None:
    k = node_kubectl
    ns, name = box.split("/")
    original = tmp_path / "notes.txt"
    content = "".join(f"line {i} of the file\n" for i in range(2000))  # more than one message's worth
    original.write_text(content)
    k.ok("cp", str(original), f"{ns}/{name}:/tmp/notes.txt")
    assert k.ok("exec", "-n", ns, name, "--", "cat", "/tmp/notes.txt") == content
    back = tmp_path / "back.txt"
    k.ok("cp", f"{ns}/{name}:/tmp/notes.txt", str(back))
    assert back.read_text() == content


def test_a_directory_is_copied_into_the_pod_and_back(node_kubectl: Kubectl, box: str, tmp_path: Path) -> None:
    k = node_kubectl
    ns, name = box.split("/")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    k.ok("cp", str(tree), f"{ns}/{name}:/tmp/tree")
    listed = k.ok("exec", "-n", ns, name, "--", "find", "/tmp/tree", "-type", "f").split()
    assert sorted(listed) == ["/tmp/tree/a.txt", "/tmp/tree/sub/b.bin"]
    back = tmp_path / "back"
    k.ok("cp", f"{ns}/{name}:/tmp/tree", str(back))
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 40
