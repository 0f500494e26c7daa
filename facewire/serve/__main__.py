"""`python -m facewire.serve`: the server (what `facewire-server` and `server.py` run)."""

from facewire.serve.cli import main

main()
