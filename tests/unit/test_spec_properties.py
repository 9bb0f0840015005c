"""The lab's own input under property-based testing: whatever ``lab.yaml`` holds (generated settings of
every type, text that is not YAML, bytes that are not UTF-8), reading it gives a valid spec or one line
naming what is wrong; ``kubelab up -f lab.yaml`` then prints that line and creates nothing.

Only invalid files reach the command (a file the spec reader accepts, with the command's own name for
the lab, is left out of that test), and the lifecycle's ``up`` is replaced by one that fails the test:
the command must not start a lab, and does not get the chance to.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from provisioner import lifecycle
from provisioner.cli.main import main
from provisioner.errors import SpecError
from provisioner.lab.spec import LabSpec, build_given, validate

MAX_MESSAGE = 400  # characters: one line a terminal shows whole, or nearly
PLAUSIBLE = st.sampled_from(
    [
        *("local", "libvirt", "auto", "tcg", "10.96.0.0/12", "10.244.0.0/16", "::/64", "10.0.0.0/8\nnext"),
        *("30000-32767", "1-\uff12", "\u0661\u0662", "\u00b2", "9" * 5000, "0", "65536", "7443", "-1", "", " 5"),
    ]
)
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=40),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.dates(),
    PLAUSIBLE,
)
KEYS = st.one_of(st.sampled_from(LabSpec.keys()), st.text(max_size=12), st.integers())
SETTINGS = st.dictionaries(KEYS, VALUES, max_size=6)
FILES = st.one_of(
    SETTINGS.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    st.text(max_size=80).map(str.encode),  # whatever text: mostly not a mapping, sometimes not YAML
    st.binary(max_size=40),  # mostly not UTF-8
)


def _check_one_line(message: str, file: Path) -> None:
    assert "\n" not in message and "\r" not in message, message
    assert 0 < len(message.replace(str(file), "FILE")) <= MAX_MESSAGE, message


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=FILES)
def test_any_lab_yaml_gives_a_valid_spec_or_one_line_naming_the_problem(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    file = tmp_path_factory.mktemp("spec") / "lab.yaml"
    file.write_bytes(data)
    try:
        spec, given_fields = build_given(file, {})
    except SpecError as exc:
        message = str(exc)
        _check_one_line(message, file)
        assert str(file) in message or any(key in message for key in LabSpec.keys()), message  # noqa: SIM118
        return
    validate(spec)  # what was accepted is valid
    assert given_fields <= set(LabSpec.fields())


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=SETTINGS)
def test_kubelab_up_with_a_bad_lab_yaml_prints_one_line_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], document: dict[object, object]
) -> None:
    home, spec_dir = tmp_path / "home", tmp_path / "spec"
    home.mkdir(exist_ok=True)
    spec_dir.mkdir(exist_ok=True)
    file = spec_dir / "lab.yaml"
    file.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        build_given(file, {"name": "kubelab"})  # as the command reads it
    except SpecError:
        pass
    else:
        assume(False)  # a valid file would start a lab
    monkeypatch.setenv("KUBELAB_HOME", str(home))
    monkeypatch.delenv("KUBELAB_LAB", raising=False)
    monkeypatch.setattr(lifecycle, "up", _must_not_start)
    capsys.readouterr()
    code = main(["up", "-f", str(file)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("kubelab: "), err
    _check_one_line(err.rstrip("\n").removeprefix("kubelab: "), file)
    assert os.listdir(home) == [], "kubelab up created something for a lab it refused"


def _must_not_start(*args: object, **kwargs: object) -> None:
    raise AssertionError("kubelab up went on to make a lab from a lab.yaml it should have refused")


def test_examples_the_properties_found(tmp_path: Path) -> None:
    """Inputs that once failed with a traceback instead of a line."""
    cases = {
        b"\x8e\xd0": "is not UTF-8 text (byte 0 is 0x8e)",
        b"memory: " + b"9" * 5000: "is not valid YAML",
        "api-port: \u0661\u0662\n".encode(): "api-port: expected a number, got '\u0661\u0662'",
        "node-port-range: 1-\uff12\n".encode(): "node-port-range '1-\uff12': expected LOW-HIGH",
        b"service-cidr: '" + b"x" * 500 + b"'\n": "service-cidr: expected at most 200 characters, got 500",
        b"a: " + b"[" * 2000 + b"]" * 2000: "is not valid YAML",  # nested beyond Python's recursion limit
    }
    for data, expected in cases.items():
        file = tmp_path / "lab.yaml"
        file.write_bytes(data)
        with pytest.raises(SpecError) as caught:
            build_given(file, {})
        assert expected in str(caught.value)
        _check_one_line(str(caught.value), file)
