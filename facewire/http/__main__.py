"""`python -m facewire.http`: the HTTP gateway (what `facewire-http` runs)."""

from facewire.http.cli import main

main()
