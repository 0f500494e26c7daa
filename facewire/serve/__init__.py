"""The server: the service (op table), workers, the broker, the supervisor and the command line."""
