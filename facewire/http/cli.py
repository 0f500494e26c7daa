"""facewire HTTP gateway: a REST API, its OpenAPI page (/docs) and web pages over a facewire server.

    python -m facewire.http --server tcp://127.0.0.1:5555 [--bind 127.0.0.1:8000]

It binds loopback by default. On any other address it needs --token-file: every API call must
then carry `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path

import uvicorn

from facewire.args import bounded, host_port, is_loopback, join_host_port, read_token, token_file
from facewire.config import DEFAULT_BIND, DEFAULT_HTTP_BIND, Gateway, Security
from facewire.wire.keys import KeysError, load_client_keys
from facewire.wire.limits import DEFAULT_MAX_PIXELS, Limits

log = logging.getLogger("facewire.http")

GRACEFUL_SHUTDOWN_SECONDS = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m facewire.http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=DEFAULT_BIND, help="the facewire server (default: %(default)s)")
    parser.add_argument("--bind", type=host_port, default=DEFAULT_HTTP_BIND, metavar="HOST:PORT",
                        help="where to answer HTTP (default: %(default)s, this machine only)")
    parser.add_argument("--token-file", type=token_file, metavar="FILE",
                        help="a file holding the bearer token every API call must carry (needed off loopback)")
    parser.add_argument("--key", type=Path, metavar="FILE", help="this gateway's .key_secret, when the server uses --keys")
    parser.add_argument("--server-key", type=Path, metavar="FILE", help="the server's public server.key")
    parser.add_argument("--connections", type=bounded(int, 1), default=Gateway.connections, metavar="N",
                        help="requests in flight to the server at once (default: %(default)s)")
    parser.add_argument("--timeout", type=bounded(float, 0, above=True), default=Gateway.timeout, metavar="S",
                        help="seconds to wait for each reply before resending (default: %(default)s)")
    parser.add_argument("--retries", type=bounded(int, 0), default=Gateway.retries, metavar="N",
                        help="resends before answering 503 (default: %(default)s)")
    parser.add_argument("--max-megapixels", type=bounded(float, 0, above=True), default=DEFAULT_MAX_PIXELS / 1e6,
                        help="refuse larger images, and uploads over 4 bytes a pixel (default: %(default)g, "
                             "as the server)")
    parser.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                        help="let pages from ORIGIN (e.g. https://example.org) call the API; repeatable (default: none)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # a server that started it: stop when it is gone
    args = parser.parse_args(argv)
    if bool(args.key) != bool(args.server_key):
        parser.error("--key and --server-key go together")
    host = args.bind[0]
    if not is_loopback(host) and args.token_file is None:
        parser.error(f"--bind {host} can be reached from other hosts: give --token-file FILE, "
                     "so that every call must carry its bearer token")
    return args


def configuration(args: argparse.Namespace) -> Gateway:
    """The gateway's configuration, from its command line."""
    host, port = args.bind
    return Gateway(server=args.server, bind=join_host_port(host, port),
                   security=Security(key=args.key, server_key=args.server_key), token_file=args.token_file,
                   connections=args.connections, timeout=args.timeout, retries=args.retries,
                   limits=Limits(int(args.max_megapixels * 1e6)), cors=tuple(args.cors), log_level=args.log_level)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from facewire.http.app import create_app  # once the arguments are good: FastAPI takes a second to import

    gateway = configuration(args)
    logging.basicConfig(level=gateway.log_level,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    try:
        keys = load_client_keys(gateway.security.key, gateway.security.server_key)
    except KeysError as exc:
        raise SystemExit(str(exc)) from None
    if gateway.token_file is not None and gateway.token_file.stat().st_mode & 0o077:
        log.warning("the token file %s can be read by other users: chmod 600 it", gateway.token_file)
    if args.parent is not None:
        stop_with_parent(args.parent)
    host, port = host_port(gateway.bind)
    token = None if gateway.token_file is None else read_token(gateway.token_file)
    uvicorn.run(create_app(gateway, keys, token), host=host, port=port, log_config=None,
                log_level=gateway.log_level.lower(), ws="websockets-sansio",
                ws_max_size=gateway.limits.max_frame_bytes, server_header=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)


def stop_with_parent(parent: int) -> None:
    """SIGTERM this gateway (uvicorn then shuts down cleanly) once the server that started it is gone,
    even killed with -9."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.warning("the server that started this gateway is gone; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
