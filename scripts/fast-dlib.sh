#!/usr/bin/env bash
# Build dlib from source with clang 16 against OpenBLAS, tuned for this CPU (-march=native),
# and install it into .venv in place of the dlib-bin wheel: the build that was fastest at both
# HOG detection and encoding here (README, Performance). The wheel is cached per CPU under
# ~/.cache/facewire/wheels, so the ~5-minute compile happens once per machine type.
# DLIB_CXXFLAGS overrides the flags (e.g. DLIB_CXXFLAGS="-O3 -mavx" for a portable build),
# DLIB_CXX and DLIB_CC the compilers (e.g. DLIB_CXX=c++ DLIB_CC=cc for Debian's GCC 12).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=20.0.1
FLAGS=${DLIB_CXXFLAGS:--O3 -march=native}
CXX=${DLIB_CXX:-clang++-16}
CC=${DLIB_CC:-clang-16}
scripts/setup.sh

need=()
for pkg in cmake libopenblas-dev liblapack-dev; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
command -v "$CXX" >/dev/null || need+=(clang-16)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The cache key: dlib version, compiler, flags, and (for -march=native) what this CPU supports.
cpu=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
key=$(printf '%s|%s|%s|%s' "$VERSION" "$("$CXX" --version | head -1)" "$FLAGS" "$cpu" | sha256sum | cut -c1-16)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/facewire/wheels/$key"
if ! ls "$cache"/dlib-*.whl >/dev/null 2>&1; then
    echo "fast-dlib: compiling dlib $VERSION with $CXX '$FLAGS' and OpenBLAS (about 5 minutes)" >&2
    mkdir -p "$cache"
    # --no-cache-dir: pip's own wheel cache ignores CXXFLAGS and would hand back another build.
    CXX="$CXX" CC="$CC" CXXFLAGS="$FLAGS" CFLAGS="$FLAGS" .venv/bin/python -m pip wheel --quiet --no-deps --no-binary dlib --no-cache-dir \
        -w "$cache" "dlib==$VERSION"
fi
.venv/bin/python -m pip uninstall --quiet -y dlib-bin dlib 2>/dev/null || true
.venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$cache"/dlib-*.whl
.venv/bin/python -c "import dlib; print('fast-dlib: installed dlib', dlib.__version__, 'BLAS', dlib.DLIB_USE_BLAS)"
