"""`facewire-gallery`: the gallery database from the command line (import, export, list, stats)."""
