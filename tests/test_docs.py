"""The README is tested: settings, commands and error codes documented; examples run."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from counterfake.cli import main
from counterfake.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands(group: click.Group, prefix: str = "counterfake") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
        else:
            found.append(path)
    return found


def test_quick_start_is_exactly_make_demo_and_make_test() -> None:
    section = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None
    assert block.group(1).split("\n")[:-1] == ["make demo", "make test"]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented(setting: object) -> None:
    assert f"`{setting.env}`" in README  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", _commands(main))
def test_every_command_is_documented(command: str) -> None:
    assert command in README


def test_every_error_code_in_the_source_is_documented() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    codes = set(re.findall(r'code="([a-z_]+)"', source))
    codes |= set(re.findall(r'default_code = "([a-z_]+)"', source)) - {
        "error",
        "invalid_input",
        "store_error",
        "not_found",
        "conflict",
    }
    assert codes, "no codes found"
    for code in sorted(codes):
        assert f"`{code}`" in README, code


def test_python_examples_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COUNTERFAKE_HOME", str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
