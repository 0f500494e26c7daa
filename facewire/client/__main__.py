"""`python -m facewire.client`: the client (what `facewire-client` and `client.py` run)."""

import sys

from facewire.client.cli import main

sys.exit(main())
