"""The public Python API: ``core.__all__`` and ``app.__all__`` resolve, stay cheap to import, and the
README's Python example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_public_names_resolve_and_import_core_stays_cheap() -> None:
    code = (
        "import sys, core, app\n"
        "assert 'torch' not in sys.modules, 'import core must not load torch'\n"
        "for pkg in (core, app):\n"
        "    for name in pkg.__all__:\n"
        "        assert getattr(pkg, name) is not None, name\n"
        "print(len(core.__all__), len(app.__all__))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["16", "10"]
    import core

    with pytest.raises(AttributeError, match="no attribute 'score_recording'"):
        core.score_recording  # noqa: B018  (it is app's: core never imports app)


@pytest.mark.slow
def test_readme_python_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """About 25 s: Whisper, FaceMesh and the shipped model on the 13 s demo clip, twice (batch, live)."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- readme-example: python -->\s*```python\n(.+?)\n```", text, re.S)
    assert m, "README has no Python example block"
    monkeypatch.chdir(REPO)
    exec(compile(m.group(1), "README.md (Python example)", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    rows = re.findall(r"^ *[\d.]+- *[\d.]+ s +([+-][\d.]+) +\([^)]*\) +(.+)$", out, re.M)
    scores = {words: float(score) for score, words in rows}
    assert any("happy" in w and s > 0 for w, s in scores.items()), out
    assert any("disappointed" in w and s < 0 for w, s in scores.items()), out
    live = re.search(r"^live: (\d+) utterances, last score ([+-][\d.]+)", out, re.M)
    assert live and int(live.group(1)) == len(rows), out  # a fast replay scores what `fine score` scores
    assert float(live.group(2)) < 0  # the clip ends on a negative sentence
    assert "parameters, feature profile: ['audio', 'text', 'vision']" in out
