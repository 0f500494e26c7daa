#!/usr/bin/env bash
# The whole suite on a busy machine: three runs in a row beside `stress-ng --cpu 2` (two processes
# that keep both cores busy), each in a different random order (pytest-randomly seeds 1, 2, 3);
# then each test file alone. Prints every failure, and exits non-zero if there was one.
#
#   scripts/stress-test.sh              the three busy runs, then each file alone
#   scripts/stress-test.sh --busy-only  the three busy runs
#   scripts/stress-test.sh --files-only each test file alone (quiet machine)
# Extra arguments after `--` go to every pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
[ "$mode" = "--" ] && mode=all
shift $(( $# > 0 ? 1 : 0 )) || true
[ "${1:-}" = "--" ] && shift
scripts/setup.sh --dev
if ! command -v stress-ng >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq stress-ng >/dev/null
fi
logs=$(mktemp -d /tmp/facewire-stress.XXXX)
failed=0
summary=()

run() {  # run LABEL PYTEST-ARGS...: one pytest run, its log kept, its failures printed
    local label=$1; shift
    local log="$logs/$label.log" start=$SECONDS status=0
    .venv/bin/python -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1 || status=$?
    local line
    line=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 | tr -d '=' | sed 's/^ *//' || true)
    summary+=("$(printf '%-34s %s (%d s)' "$label" "${line:-no summary, exit $status}" $((SECONDS - start)))")
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "--- $label failed (exit $status), log $log:" >&2
        grep -E '^(FAILED|ERROR) ' "$log" >&2 || tail -30 "$log" >&2
    fi
}

if [ "$mode" = all ] || [ "$mode" = --busy-only ]; then
    stress-ng --cpu 2 --quiet &
    stress=$!
    trap 'kill $stress 2>/dev/null || true' EXIT
    for seed in 1 2 3; do
        run "busy-seed-$seed" --randomly-seed="$seed" "$@"
    done
    kill $stress; wait $stress 2>/dev/null || true
    trap - EXIT
fi
if [ "$mode" = all ] || [ "$mode" = --files-only ]; then
    for file in tests/test_*.py; do
        run "alone-$(basename "$file" .py)" "$file" "$@"
    done
fi

echo
printf '%s\n' "${summary[@]}"
echo "logs: $logs"
[ "$failed" -eq 0 ] && echo "stress-test: no failures" || echo "stress-test: FAILURES above" >&2
exit "$failed"
