"""Random mutations of valid config files: ``quorum check-config`` names the bad key,
never shows a traceback.

Most examples run the CLI function in this process (fast); a few run the real command.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorum.server.cli import main
from quorum.server.config import default_config_text
from tests.conftest import sim_config

QUORUM = Path(sys.executable).with_name("quorum")
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASES: list[dict[str, Any]] = [
    sim_config(),
    yaml.safe_load(default_config_text()),
    {
        **sim_config(),
        "server": {"log_level": "warning", "grace_period_s": 5, "max_concurrent_rpcs": 64},
        "admission": {"max_inflight": 32, "retry_after_s": 0.5},
        "state": {"refresh_interval_s": 0.5},
    },
]
# A problem line: "  <key path>: <what is wrong>".
PROBLEM = re.compile(r"^  \S.*?: .+")

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "0", "-1", "1e400", "yes", "null", "[]", "{}", "http://", "x" * 300]),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into ``node`` (dict keys and list indices)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from paths(value, (*prefix, index))


def parent_of(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config with one to three random edits."""
    data: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        every = list(paths(data))
        if not every:
            break
        path = draw(st.sampled_from(every))
        parent = parent_of(data, path)
        key = path[-1]
        op = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        if op == "replace":
            parent[key] = draw(JUNK)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(JUNK)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(key)
        else:
            parent[key] = draw(JUNK)
    return data


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(["check-config", str(path)])
    except Exception as exc:  # a traceback is the failure this test looks for
        raise AssertionError(f"check-config raised {exc!r} on:\n{path.read_text()}") from exc
    out, err = capsys.readouterr()
    return code, out + err


def assert_names_a_key(code: int, output: str, source: str) -> None:
    assert "Traceback" not in output
    if code == 0:
        assert ": ok" in output, output
        return
    assert code == 1, output
    lines = output.strip().splitlines()
    assert lines[0] == "invalid configuration:", output
    assert lines[1:], output
    for line in lines[1:]:
        assert PROBLEM.match(line), f"{line!r} does not name a key\n--- config:\n{source}"


def _contains_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_contains_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_non_finite(v) for v in value)
    return False


@SETTINGS
@given(data=mutated())
def test_mutated_configs_get_an_error_naming_a_key(
    data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "quorum.yaml"
        source = yaml.safe_dump(data, allow_unicode=True)
        path.write_text(source, encoding="utf-8")
        code, output = check(path, capsys)
    assert_names_a_key(code, output, source)


@SETTINGS
@given(
    base=st.sampled_from(BASES),
    edits=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1),
            st.integers(min_value=0, max_value=8),
            st.text(alphabet=":-[]{}#&*!|>'\"%@`\t\n ,?x1.", max_size=6),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mangled_yaml_text_gets_an_error_not_a_traceback(
    base: dict[str, Any],
    edits: list[tuple[float, int, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = yaml.safe_dump(base)
    for where, cut, insert in edits:
        at = int(where * len(source))
        source = source[:at] + insert + source[at + cut :]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "quorum.yaml"
        path.write_text(source, encoding="utf-8")
        code, output = check(path, capsys)
        if code == 1 and "not valid YAML" in output:
            assert "Traceback" not in output
            assert f"{path}: not valid YAML" in output
            return
    assert_names_a_key(code, output, source)


def test_unreadable_and_non_utf8_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00models: [")
    code, output = check(binary, capsys)
    assert code == 1 and "Traceback" not in output and str(binary) in output
    code, output = check(tmp_path / "missing.yaml", capsys)
    assert code == 1 and "Traceback" not in output and "missing.yaml" in output


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["models"]["flash"].update(tier=["cheap"]),
        lambda d: d["providers"].update(sim={"kind": "simulated", "timeout_s": float("nan")}),
        lambda d: d.update(tiers={"cheap": 1}),
    ],
    ids=["list-for-a-name", "nan-timeout", "tiers-as-mapping"],
)
def test_the_real_command_names_the_key(tmp_path: Path, edit: Any) -> None:
    data = sim_config()
    edit(data)
    path = tmp_path / "quorum.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [QUORUM, "check-config", path], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert_names_a_key(done.returncode, done.stdout + done.stderr, path.read_text())
