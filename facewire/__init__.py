"""facewire: face recognition over ZeroMQ."""

__version__ = "0.1.0"
