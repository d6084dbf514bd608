#!/usr/bin/env bash
# edge-dred quick start.  Two commands, both idempotent:
#
#   ./quickstart.sh          set up (apt packages, .venv, build) and run the demo:
#                            speech -> Opus + DRED -> bursty loss -> recovery -> out/demo.wav
#   ./quickstart.sh test     same set-up plus test/eval dependencies, then the whole test suite
#
# Re-runs skip the build when no build input changed since the last one (.venv/.quickstart-built).
#
# Extra arguments after the mode go to `edge-dred simulate` (demo) or pytest (test).
set -euo pipefail
cd "$(dirname "$0")"

usage() { echo "usage: ./quickstart.sh [demo|test] [args...]" >&2; }
MODE="${1:-demo}"
[ $# -gt 0 ] && shift
case "$MODE" in
    demo|test) ;;
    -h|--help) usage; exit 0 ;;
    *) echo "quickstart: unknown mode '$MODE'" >&2; usage; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PKGS=(build-essential pkg-config libopus-dev libasound2-dev python3-venv python3-dev espeak-ng)
if [ "$MODE" = "test" ]; then
    # Cross toolchains + qemu for the emulated ARM kernel tests; ffmpeg for interop tests;
    # debootstrap (target sysroot) and qemu-user (TCG plugins, instruction counts) for the ARM wheels;
    # GStreamer's rtpredenc/rtpreddec (plugins-good) for the RED interop test; clang and its
    # libFuzzer/ASan runtime for the coverage-instrumented fuzzing build (tests/fuzz/build_native.sh).
    APT_PKGS+=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user-static ffmpeg sox
               debootstrap qemu-user gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
               clang libclang-rt-14-dev)
fi

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "[quickstart] installing apt packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[quickstart] creating virtualenv .venv"
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python

if [ "$MODE" = "test" ]; then
    EXTRAS="[test,eval]"
else
    EXTRAS=""
fi
# Rebuild only when needed: no build yet, test extras missing, a build input (setup.py,
# pyproject.toml, Cython or C sources) newer than the last build, or an extension missing.
STAMP=.venv/.quickstart-built
need_build=""
if [ ! -f "$STAMP" ]; then
    need_build="first build"
elif [ "$MODE" = "test" ] && [ "$(cat "$STAMP")" != "[test,eval]" ]; then
    need_build="test extras"
elif [ -n "$(find . \( -path ./.venv -o -path ./.git -o -path ./build -o -path ./tests -o -path ./scripts \) -prune -o \
        \( -name setup.py -o -name pyproject.toml -o -name build_config.py -o -name '*.pyx' -o -name '*.pxd' \
           -o -name '*.c' -o -name '*.h' \) -newer "$STAMP" -print | head -n 1)" ]; then
    need_build="sources changed"
else
    for pyx in $(find . \( -path ./.venv -o -path ./.git -o -path ./build \) -prune -o -name '*.pyx' -print); do
        compgen -G "${pyx%.pyx}.*.so" >/dev/null || need_build="extension ${pyx%.pyx} missing"
    done
fi
if [ -n "$need_build" ]; then
    echo "[quickstart] building edge-dred from source ($need_build)"
    "$VPY" -m pip install -q --upgrade pip setuptools wheel >/dev/null
    # setuptools' note that every editable install gets is not news to the user.
    PYTHONWARNINGS="ignore:Editable installation" "$VPY" -m pip install -q -e ".${EXTRAS}"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "[test,eval]" ]; then
        EXTRAS="[test,eval]"  # installed before and still there
    fi
    echo "$EXTRAS" > "$STAMP"
else
    echo "[quickstart] edge-dred is built and up to date (.venv)"
fi

case "$MODE" in
    demo)
        mkdir -p out
        exec .venv/bin/edge-dred simulate --loss 20 --burst 3 --lbrr --dred -o out/demo.wav --report out/demo_report.json "$@"
        ;;
    test)
        # Everything, the tests marked slow included (a plain `pytest` leaves those out).
        exec "$VPY" -m pytest -q -m "slow or not slow" "$@"
        ;;
esac
