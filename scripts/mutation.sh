#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut (configured under [tool.mutmut] in pyproject.toml):
# set up with the test tools, mutate, run the fast in-process tests against every mutant, then print
# killed / total per module and every surviving mutant (with its reason when it is listed as
# equivalent in tests/mutation_equivalents.txt). Exits non-zero when a survivor is not listed.
#
#   scripts/mutation.sh            a fresh run (about 20 minutes on 2 cores: 2,034 mutants, 20m10s on 2026-11-28)
#   scripts/mutation.sh --keep     reuse mutants/ from the last run: only mutants of changed functions rerun
#   scripts/mutation.sh --survivors  reuse mutants/ and retest the last run's survivors (say, after adding tests)
#   scripts/mutation.sh --report   only print the report of the last run
#   scripts/mutation.sh --show M   the diff of mutant M
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
    --report) exec .venv/bin/python scripts/mutation_report.py ;;
    --show) exec .venv/bin/mutmut show "$2" ;;
esac

scripts/setup.sh --dev
names=()
case "${1:-}" in
    --keep) ;;
    --survivors)
        # mutmut keeps a verdict until its function changes; survivors named here are tested again.
        mapfile -t names < <(.venv/bin/python scripts/mutation_report.py --survivors)
        [ ${#names[@]} -gt 0 ] || { echo "mutation: no survivors to retest" >&2; exit 0; } ;;
    *) rm -rf mutants ;;
esac
mkdir -p mutants
log=mutants/mutmut-run.log
echo "mutation: mutmut $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("mutmut"))');" \
     "progress in $log" >&2
start=$(date +%s)
# mutmut draws a spinner on the terminal: keep it in the log. No display: no test opens a window.
status=0
env -u DISPLAY -u WAYLAND_DISPLAY .venv/bin/mutmut run --max-children "${MUTATION_JOBS:-$(nproc)}" "${names[@]}" \
    >"$log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))
if [ "$status" -ne 0 ]; then
    tr '\r' '\n' <"$log" | tail -40 >&2
    echo "mutation: mutmut run failed (exit $status) after ${elapsed} s" >&2
    exit "$status"
fi
tr '\r' '\n' <"$log" | grep -E "mutations/second" | tail -1 >&2 || true
printf 'mutation: run took %dm%02ds\n\n' $((elapsed / 60)) $((elapsed % 60))
exec .venv/bin/python scripts/mutation_report.py
