#!/usr/bin/env bash
# Create .venv and install facewire's pinned packages (and the test tools with --dev).
# Installs the few Debian packages a fresh machine may lack, when run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
        echo "setup: please install these Debian packages: $*" >&2
        return 1
    fi
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# OpenCV's wheel links libGL and GLib; Debian's Python needs python3-venv for venvs.
missing=()
for pkg in libgl1 libglib2.0-0; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
fi
# Fonts for names on the pictures: DejaVu, and a CJK fallback. Without them, Pillow's own.
fonts=()
for pkg in fonts-dejavu-core fonts-droid-fallback; do dpkg -s "$pkg" >/dev/null 2>&1 || fonts+=("$pkg"); done
if [ ${#fonts[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    apt_install "${fonts[@]}" || echo "setup: without ${fonts[*]}, some names may not draw legibly" >&2
fi
# The tests open a real window on a virtual display when Xvfb and xdotool are there.
if [ "${1:-}" = "--dev" ] && ! { command -v Xvfb && command -v xdotool; } >/dev/null && command -v apt-get >/dev/null; then
    echo "setup: installing xvfb and xdotool for the window test" >&2
    apt_install xvfb xdotool || echo "setup: without them the window test is skipped" >&2
fi
# The web pages' tests drive a real headless browser: Debian's chromium and its chromedriver.
if [ "${1:-}" = "--dev" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null && command -v apt-get >/dev/null; then
    echo "setup: installing chromium and chromium-driver for the browser tests" >&2
    apt_install chromium chromium-driver || echo "setup: without them the browser tests are skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv || { rm -rf .venv; apt_install python3-venv && "$PYTHON" -m venv .venv; }
fi

# Reinstall only when the requirement files change.
files=(requirements.txt)
[ "${1:-}" = "--dev" ] && files+=(requirements-dev.txt)
stamp=".venv/.facewire-$(cat "${files[@]}" | sha256sum | cut -c1-16)"
# A dlib built by scripts/fast-dlib.sh (distribution "dlib") replaces dlib-bin: keep it.
without_replaced_dlib() {
    if .venv/bin/python -m pip show dlib >/dev/null 2>&1; then grep -v '^dlib-bin'; else cat; fi
}
if [ ! -f "$stamp" ]; then
    for f in "${files[@]}"; do
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
            -r <(without_replaced_dlib < "$f")
    done
    .venv/bin/python -W ignore::UserWarning -c "import dlib, face_recognition, cv2, zmq, onnxruntime, fastapi, uvicorn, multipart, lz4.frame" \
        || { echo "setup: the installed packages do not import; see above" >&2; exit 1; }
    touch "$stamp"
fi

# dlib's face network as ONNX (the default encoder), MTCNN's networks as ONNX (the default detector) and
# dlib's HOG detector as dlib saves it: made once, then kept in ~/.cache/facewire (see facewire/faces/model_files.py).
.venv/bin/python -c "from facewire.faces.model_files import cached_model; cached_model()" \
    || { echo "setup: could not convert dlib's face network to ONNX; see above" >&2; exit 1; }
.venv/bin/python -c "from facewire.faces.mtcnn_model import cached_models; cached_models()" \
    || { echo "setup: could not convert MTCNN's networks to ONNX; see above" >&2; exit 1; }
.venv/bin/python -c "from facewire.faces.hog import hog_detector; hog_detector()" \
    || { echo "setup: could not load dlib's HOG face detector; see above" >&2; exit 1; }
