"""Repository hygiene: lint, import contracts, CI calls the README's test command, README commands run."""

from __future__ import annotations

import json
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
    out = r.stdout
    # the timeline is printed: the demo's words, then where the report is
    assert "I am so disappointed" in out and "really happy" in out, out[-3000:]
    assert "report: runs/demo/demo_mp4/report.html" in out, out[-3000:]
    assert "1 inputs: 1 complete" in out, out[-3000:]
    assert (clone / "runs" / "demo" / "demo_mp4" / "report.html").stat().st_size > 10_000
    rows = json.loads((clone / "runs" / "demo" / "demo_mp4" / "timeline.json").read_text())["rows"]
    assert len(rows) >= 3
    first = [r["score"] for r in rows if r["end"] <= 6.7]  # smiling + "I absolutely loved this film"
    second = [r["score"] for r in rows if r["start"] >= 6.7]  # crying + "I am so disappointed"
    assert first and second and max(second) < min(first), rows


def test_mypy_is_clean_on_core_export_and_the_pipeline():
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "core", "export", "app/pipeline"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-3000:]
