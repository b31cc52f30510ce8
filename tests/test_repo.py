"""Repository hygiene: lint, import contracts, CI calls the README's test command, README commands run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def readme_command(name: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- readme-command: {name} -->\s*```bash\n(.+?)\n```", text, re.S)
    assert m, f"README has no '{name}' command block"
    return m.group(1).strip()


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name) or name


def test_ruff_lint_is_clean():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_ruff_format_is_clean():
    r = subprocess.run(
        [_tool("ruff"), "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-3000:]


def test_import_contracts_hold():
    r = subprocess.run([_tool("lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "broken" not in r.stdout.lower() or "0 broken" in r.stdout.lower()


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert readme_command("test") in ci
    assert readme_command("main").startswith("bash scripts/setup.sh")


def test_fine_cli_lists_only_existing_commands():
    from app import cli

    for name, (target, _) in {**cli.COMMANDS, **cli.BENCHES}.items():
        assert callable(cli._resolve(target)), name


@pytest.mark.slow
def test_readme_main_command_works_from_a_fresh_clone(tmp_path):
    """Clone HEAD, then run the README's main command there with a brand-new virtual environment."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {**os.environ, "FINE_VENV": str(tmp_path / "venv"), "FINE_SKIP_APT": "1"}
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run(
        readme_command("main"), shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=1500
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "run directory runs/demo" in r.stdout, r.stdout[-2000:]
    assert (clone / "runs" / "demo" / "model" / "model.safetensors").exists()
    mae = float(re.findall(r"MAE=([0-9.]+)", r.stdout)[-1])  # the test split
    assert mae < 1.0, r.stdout


def test_mypy_is_clean_on_core():
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "core"], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-3000:]
