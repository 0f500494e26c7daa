#!/usr/bin/env bash
# Set up, start the server on known_faces/, recognise every image in test_images/, stop.
# With a display the results open in windows (any key: next, q: quit); without one
# they are saved to facewire-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PORT=${FACEWIRE_PORT:-5555}
ADDRESS="tcp://127.0.0.1:$PORT"

.venv/bin/python server.py --bind "$ADDRESS" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
.venv/bin/python client.py --server "$ADDRESS" --ping --timeout 30 --retries 0 >/dev/null
.venv/bin/python client.py --server "$ADDRESS" test_images/ "$@"
