"""The wire: the protocol (typed requests, replies, error types), sockets (transport), CURVE keys. Knows no faces."""
