#!/usr/bin/env bash
# Build the compiled parsers with clang for coverage-guided fuzzing: libFuzzer edge counters and
# compare tracing (-fsanitize=fuzzer-no-link) plus ASan and UBSan, in a copy of the sources.
#
#   tests/fuzz/build_native.sh [BUILD_DIR]        # default $FUZZ_WORK/native (FUZZ_WORK: /tmp/edge-dred-fuzz)
#
# BUILD_DIR/tree is a copy of the tracked sources with every extension built in place by clang
# with ASan + UBSan; the ones that take network bytes (NATIVE_COVERAGE: the DRED payload parser
# edge_dred.dred._entropy and the Opus binding edge_dred.codec._opus) also carry libFuzzer
# coverage, so atheris's feedback reaches inside them.  The package tree the tests use is never
# touched.  BUILD_DIR/asan_with_fuzzer.so is the ASan runtime (UBSan included) with libFuzzer
# linked in; it must be preloaded, so that the coverage callbacks reach libFuzzer rather than
# the sanitizer's weak stubs (atheris then uses that libFuzzer instead of its own copy).
# atheris ships this library only when built from source; here it is made from clang's archives.
#
# Run a harness against the build (what `run_all.sh native` does):
#
#   EDGE_DRED_FUZZ_TREE=BUILD_DIR/tree LD_PRELOAD=BUILD_DIR/asan_with_fuzzer.so \
#   ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
#       .venv/bin/python tests/fuzz/fuzz_dred.py /tmp/dred tests/fuzz/corpus/dred
#
# Needs clang and its sanitizer/libFuzzer archives (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=$(realpath -m "${1:-${FUZZ_WORK:-/tmp/edge-dred-fuzz}/native}")
CC=${CLANG:-clang}
NATIVE_COVERAGE=${NATIVE_COVERAGE:-_entropy,_opus}

command -v "$CC" >/dev/null || { echo "clang not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
ARCH=$(uname -m)
ASAN_A=$("$CC" -print-file-name="libclang_rt.asan-$ARCH.a")
FUZZ_A=$("$CC" -print-file-name="libclang_rt.fuzzer_no_main-$ARCH.a")
CXX_A=$("$CC" -print-file-name="libclang_rt.asan_cxx-$ARCH.a")
for a in "$ASAN_A" "$FUZZ_A" "$CXX_A"; do
    [ -f "$a" ] || { echo "missing $a (Debian: libclang-rt-<version>-dev)" >&2; exit 1; }
done
mkdir -p "$OUT"
LOG=$OUT/build.log
: >"$LOG"

# 1. The preload: ASan runtime + libFuzzer in one shared object.  asan_preinit.o only works in
#    executables (.preinit_array), so it is left out; preloading does its job.
OBJ=$OUT/rt-objs
rm -rf "$OBJ" && mkdir -p "$OBJ/asan" "$OBJ/cxx" "$OBJ/fuzzer"
(cd "$OBJ/asan" && ar x "$ASAN_A" && rm -f asan_preinit*.o)
(cd "$OBJ/cxx" && ar x "$CXX_A")
(cd "$OBJ/fuzzer" && ar x "$FUZZ_A")
"$CC" -shared -o "$OUT/asan_with_fuzzer.so" "$OBJ"/asan/*.o "$OBJ"/cxx/*.o "$OBJ"/fuzzer/*.o \
    -lstdc++ -lpthread -ldl -lrt -lm >>"$LOG" 2>&1 || { echo "runtime link failed: $LOG" >&2; exit 1; }
rm -rf "$OBJ"

# 2. A copy of the sources (tracked and new files), so the instrumented objects never land in
#    the tree the tests import.
TREE=$OUT/tree
rm -rf "$TREE" && mkdir -p "$TREE"
scripts/copy_sources.sh "$TREE"

# 3. The network parsers with ASan + UBSan + coverage, the other extensions with ASan + UBSan.  clang
#    rejects the gcc-only optimisation switch the DSP extensions pass; a wrapper drops it.  clang 14
#    does not know the kernels' CPU-feature probe (avxvnni), so gcc builds them, with its ASan + UBSan
#    instrumentation (same runtime interface; clang links it, so that gcc's libasan is not pulled
#    in): they are not parsers, the coverage is not needed there.
WRAP=$OUT/cc
printf '#!/bin/sh\nfor a; do shift; [ "$a" = -fno-predictive-commoning ] || set -- "$@" "$a"; done\nexec %s "$@"\n' \
    "$(command -v "$CC")" >"$WRAP"
chmod +x "$WRAP"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
build() {  # build(compiler, cflags, extensions); clang links (no gcc libasan: one ASan runtime only)
    (cd "$TREE" && CC="$1" LDSHARED="$WRAP -shared" CFLAGS="$2" LDFLAGS="$2" EDGE_DRED_BUILD_ONLY="$3" \
        "$PY" setup.py -q build_ext --inplace --force >>"$LOG" 2>&1) \
        || { echo "instrumented build failed: $LOG" >&2; exit 1; }
}
build "$WRAP" "$SAN -fsanitize=fuzzer-no-link" "$NATIVE_COVERAGE"
# every other Cython extension (module name = .pyx name) but the kernels and the ones above
OTHERS=$(cd "$TREE" && find edge_dred -name '_*.pyx' -not -path '*/kernels/*' -printf '%f\n' | sed 's/\.pyx$//' \
         | grep -v -x -E "$(tr ',' '|' <<<"$NATIVE_COVERAGE")" | paste -sd, -)
build "$WRAP" "$SAN" "$OTHERS"
build gcc "$SAN" "_kernels"

for pyx in $(find "$TREE/edge_dred" -name '_*.pyx'); do
    compgen -G "${pyx%.pyx}.cpython*.so" >/dev/null || { echo "not built: ${pyx#"$TREE"/}" >&2; exit 1; }
done
n=0
for so in $(find "$TREE/edge_dred" -name '*.so'); do
    syms=$(nm "$so")
    grep -q __asan <<<"$syms" || { echo "not instrumented: $so" >&2; exit 1; }
    if grep -q __sancov_cntrs <<<"$syms"; then echo "coverage + ASan/UBSan: ${so#"$TREE"/}"; n=$((n + 1)); fi
done
[ "$n" -gt 0 ] || { echo "no extension carries libFuzzer coverage" >&2; exit 1; }
echo "built $TREE"
echo "preload $OUT/asan_with_fuzzer.so"
