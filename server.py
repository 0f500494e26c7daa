#!/usr/bin/env python3
"""facewire server: `python server.py` (see --help). The code is in facewire/serve/cli.py."""

from facewire.serve.cli import main

if __name__ == "__main__":
    main()
