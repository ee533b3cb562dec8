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


def _shell_block(after: str) -> list[str]:
    section = README.split(after, 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None
    commands = []
    for line in block.group(1).splitlines():
        command = line.split("  #", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


def test_the_using_it_examples_run_in_order_in_a_fresh_store(tmp_path: Path) -> None:
    """Each command of "Using it", as written, in a throwaway store (all but `demo`, tested on
    its own, and `serve`, which does not return); KEY_ID is the id `key create` made."""
    import json
    import os
    import shlex
    import subprocess
    import sys

    from tests.images import encode, photo_like

    work = tmp_path / "work"
    for folder in ("folder", "my-photos", "export"):
        (work / folder).mkdir(parents=True)
    (work / "photo.jpg").write_bytes(encode(photo_like(480, 360, seed=1)))
    (work / "upload.jpg").write_bytes(encode(photo_like(480, 360, seed=1), quality=70))
    for seed in (2, 3):
        (work / "folder" / f"f{seed}.jpg").write_bytes(encode(photo_like(400, 300, seed=seed)))
        (work / "my-photos" / f"m{seed}.jpg").write_bytes(encode(photo_like(400, 300, seed=seed)))
        (work / "export" / f"e{seed}.jpg").write_bytes(encode(photo_like(400, 300, seed=seed)))
    (work / "list.txt").write_text(f"pdq {'f0' * 32}\n{'0f' * 32}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERFAKE_")}
    env["COUNTERFAKE_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    commands = _shell_block("## Using it")
    assert len(commands) >= 25
    key_id = ""
    for command in commands:
        if command.startswith(("counterfake demo", "counterfake serve")):
            continue
        done = subprocess.run(
            shlex.split(command.replace("KEY_ID", key_id)),
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr
        if command.startswith("counterfake key create"):
            listed = subprocess.run(
                ["counterfake", "key", "list", "--json"], env=env, capture_output=True, text=True
            )
            key_id = json.loads(listed.stdout.splitlines()[0])["key_id"]
    exported = [json.loads(line) for line in (work / "mine.jsonl").read_text().splitlines()]
    assert len(exported) == 3 * 3 + 2  # three images' signals and the two listed hashes
    assert [e["entry_id"] for e in exported if e["withdrawn_at"]] == [1, 2, 3]
    assert (work / "protect.jsonl").is_file() and (work / "report").is_dir()


def _documented_routes() -> set[tuple[str, str]]:
    documented = set()
    for row in README.splitlines():
        if not row.startswith("| `"):
            continue
        cell = row.split("|")[1]
        for group in re.findall(r"`([^`]*)`", cell):
            words = group.split()
            methods = [w for w in words if w in ("GET", "POST", "PUT", "PATCH", "DELETE")]
            paths = [w for w in words if w.startswith("/")]
            for path in paths:
                path = re.sub(r"\{[^}]*\}", "{}", re.split(r"[?\[]", path)[0])
                documented |= {(m, path) for m in methods}
    return documented


def test_every_http_route_is_in_the_readme_route_tables() -> None:
    from counterfake.service.app import create_app
    from counterfake.settings import load_settings

    spec = create_app(load_settings(database_url="sqlite://")).openapi()
    served = {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
        for path, operations in spec["paths"].items()
        for method in operations
    }
    assert served, "no routes"
    assert served - _documented_routes() == set()
