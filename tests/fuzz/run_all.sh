#!/usr/bin/env bash
# Fuzz every untrusted-input parser: long runs, and a sanitizer (ASan + UBSan) pass.
#
#   tests/fuzz/run_all.sh long  [SECONDS_PER_HARNESS] [HARNESS...]   # default 3600 s each
#   tests/fuzz/run_all.sh runs  [RUNS_PER_HARNESS]    [HARNESS...]   # e.g. 10000000 each
#   tests/fuzz/run_all.sh asan  [SECONDS_PER_HARNESS] [HARNESS...]   # default 300 s each
#   tests/fuzz/run_all.sh native      [SECONDS_PER_HARNESS] [HARNESS...]  # default 3600 s; dred, opusdec
#   tests/fuzz/run_all.sh native-runs [RUNS_PER_HARNESS]    [HARNESS...]  # default 10000000
#
# `asan` copies the tracked sources to $FUZZ_WORK/asan-tree, builds the C/Cython extensions
# there with -fsanitize=address,undefined (gcc; the Opus binding, the DRED range coder, the
# feature and int8 kernels), and runs the harnesses against that build with libasan preloaded.
# gcc has no libFuzzer coverage instrumentation, so coverage feedback comes from the Python
# code (atheris); the sanitizers still watch every byte the extensions touch.
#
# `native`/`native-runs` build with clang instead (tests/fuzz/build_native.sh): the extensions that
# take network bytes (DRED payload parser, Opus binding) carry libFuzzer coverage, so atheris's
# feedback reaches inside them, and all of them carry ASan + UBSan.  Its default harnesses are the
# ones that reach those extensions.  ASan reports there omit allocation stacks (malloc_context_size=0,
# several times faster under Python); replaying the crash file with the same command gives the rest
# once ASAN_OPTIONS is set without it.
#
# Findings: libFuzzer stops and writes crash-* files under $FUZZ_WORK/<harness>/; the summary
# table (executions per harness, coverage at start -> end, findings) is printed at the end and
# written to $FUZZ_WORK/summary.md.  Runs under `nice -n ${FUZZ_NICE:-10}`, one harness at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MODE=${1:-long}; [ $# -gt 0 ] && shift
AMOUNT=${1:-}; [ $# -gt 0 ] && shift
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${FUZZ_WORK:-/tmp/edge-dred-fuzz}
mkdir -p "$WORK"
HARNESSES=("$@")
if [ ${#HARNESSES[@]} -eq 0 ] && [ "${MODE#native}" != "$MODE" ]; then HARNESSES=(dred opusdec); fi
if [ ${#HARNESSES[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.py; do h=${f##*/fuzz_}; HARNESSES+=("${h%.py}"); done
fi

TREE=$ROOT
ENV=()
case "$MODE" in
    long) LIMIT="-max_total_time=${AMOUNT:-3600}" ;;
    runs) LIMIT="-runs=${AMOUNT:-10000000}" ;;
    asan)
        LIMIT="-max_total_time=${AMOUNT:-300}"
        TREE=$WORK/asan-tree
        rm -rf "$TREE" && mkdir -p "$TREE"
        scripts/copy_sources.sh "$TREE"
        cp -r tests/fuzz/corpus "$TREE/tests/fuzz/" 2>/dev/null || true
        SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
        (cd "$TREE" && CFLAGS="$SAN" CXXFLAGS="$SAN" LDFLAGS="-fsanitize=address,undefined" \
            "$PY" setup.py -q build_ext --inplace >"$WORK/asan-build.log" 2>&1) \
            || { echo "sanitizer build failed: $WORK/asan-build.log"; exit 1; }
        ENV=(LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
             ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
        ;;
    native|native-runs)
        if [ "$MODE" = native ]; then LIMIT="-max_total_time=${AMOUNT:-3600}"; else LIMIT="-runs=${AMOUNT:-10000000}"; fi
        PYTHON=$PY nice -n "${FUZZ_NICE:-10}" tests/fuzz/build_native.sh "$WORK/native" >"$WORK/native-build.out" 2>&1 \
            || { cat "$WORK/native-build.out"; exit 1; }
        ENV=(EDGE_DRED_FUZZ_TREE="$WORK/native/tree" LD_PRELOAD="$WORK/native/asan_with_fuzzer.so"
             ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:detect_odr_violation=0:malloc_context_size=0:quarantine_size_mb=32
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
        ;;
    *) echo "usage: $0 long|runs|asan|native|native-runs [AMOUNT] [HARNESS...]" >&2; exit 2 ;;
esac

printf '| harness | mode | executions | exec/s | cov start -> end | findings |\n|---|---|---|---|---|---|\n' >"$WORK/summary.md"
status=0
for h in "${HARNESSES[@]}"; do
    out=$WORK/$h; mkdir -p "$out"
    log=$WORK/$h.$MODE.log
    set +e
    (cd "$TREE" && env "${ENV[@]}" nice -n "${FUZZ_NICE:-10}" "$PY" "tests/fuzz/fuzz_$h.py" "$LIMIT" -rss_limit_mb=2048 \
        -timeout=30 -print_final_stats=1 "-artifact_prefix=$out/" "$out" "tests/fuzz/corpus/$h") >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    found=$(ls "$out" | grep -c -E '^(crash|leak|timeout|oom)-' || true)
    cov0=$(grep -o 'INITED cov: [0-9]*' "$log" | grep -o '[0-9]*$' | head -1)
    cov1=$(grep -o ' cov: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    if [ "$rc" -ne 0 ]; then status=1; fi
    printf '| %s | %s | %s | %s | %s -> %s | %s%s |\n' "$h" "$MODE" "${execs:-?}" "${speed:-?}" "${cov0:-?}" \
        "${cov1:-?}" "$found" \
        "$([ "$rc" -ne 0 ] && echo " (exit $rc, see $log)")" | tee -a "$WORK/summary.md"
done
echo "summary: $WORK/summary.md"
exit $status
