"""`python -m facewire.gallery`: what `facewire-gallery` runs."""

from facewire.gallery.cli import main

raise SystemExit(main())
