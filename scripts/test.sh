#!/usr/bin/env bash
# Set up (with the test tools) and run the test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
# The database tests start a throwaway PostgreSQL 15 cluster (tests/postgres.py) and, as root or
# under CI, fail rather than skip without one: install Debian's postgresql when it is missing.
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing postgresql for the database tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
