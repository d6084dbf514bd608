#!/usr/bin/env bash
# edge-dred quick start.  Two commands, both idempotent:
#
#   ./quickstart.sh          set up (apt packages, .venv, build) and run the demo:
#                            speech -> Opus + DRED -> bursty loss -> recovery -> out/demo.wav
#   ./quickstart.sh test     same set-up plus test/eval dependencies, then the whole test suite
#
# Extra arguments after the mode go to `edge-dred simulate` (demo) or pytest (test).
set -euo pipefail
cd "$(dirname "$0")"

MODE="${1:-demo}"
[ $# -gt 0 ] && shift

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PKGS=(build-essential pkg-config libopus-dev libasound2-dev python3-venv python3-dev espeak-ng)
if [ "$MODE" = "test" ]; then
    # Cross toolchains + qemu for the emulated ARM kernel tests; ffmpeg for interop tests;
    # debootstrap (target sysroot) and qemu-user (TCG plugins, instruction counts) for the ARM wheels.
    APT_PKGS+=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user-static ffmpeg sox
               debootstrap qemu-user)
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
"$VPY" -m pip install -q --upgrade pip setuptools wheel >/dev/null

if [ "$MODE" = "test" ]; then
    EXTRAS="[test,eval]"
else
    EXTRAS=""
fi
echo "[quickstart] building edge-dred from source"
"$VPY" -m pip install -q -e ".${EXTRAS}"

case "$MODE" in
    demo)
        mkdir -p out
        exec .venv/bin/edge-dred simulate --loss 20 --burst 3 --lbrr --dred -o out/demo.wav --report out/demo_report.json "$@"
        ;;
    test)
        exec "$VPY" -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./quickstart.sh [demo|test] [args...]" >&2
        exit 2
        ;;
esac
