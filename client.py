#!/usr/bin/env python3
"""facewire client: `python client.py IMAGE...` (see --help). The code is in facewire/client/cli.py."""

import sys

from facewire.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
