"""The client side: `Client` (one request, or many pipelined in order), video, output, and the command line."""

from facewire.client.client import DEFAULT_SERVER, Client, Result, ServerError
from facewire.client.pipeline import ServerUnavailable

__all__ = ["Client", "Result", "ServerError", "ServerUnavailable", "DEFAULT_SERVER"]
