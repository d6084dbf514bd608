#!/usr/bin/env bash
# Copy the project's sources into DEST: the tracked and new files (nothing ignored), or only those
# under PATH...  Outside a git checkout, or without git, a copy of the tree that leaves in-place
# builds (*.so, __pycache__, *.egg-info) and the local folders (.venv, build, dist, .git, test
# caches) behind.
#
#   scripts/copy_sources.sh DEST [PATH...]
#
# Used wherever a build must not see (or write into) the working tree's own build outputs:
# scripts/build_wheels.sh (staging), tests/fuzz/build_native.sh and run_all.sh (instrumented trees).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DEST [PATH...]" >&2; exit 2; }
DEST=$1
shift
mkdir -p "$DEST"
cd "$(dirname "$0")/.."
if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -- "$@" \
        | while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done \
        | tar -cf - -T - | tar -xf - -C "$DEST"
else
    [ $# -gt 0 ] || set -- .
    tar -cf - --exclude='*.so' --exclude='__pycache__' --exclude='*.egg-info' --exclude=./.venv --exclude=./build \
        --exclude=./dist --exclude=./.git --exclude=./.hypothesis --exclude=./.pytest_cache "$@" | tar -xf - -C "$DEST"
fi
