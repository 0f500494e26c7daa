"""argparse types that refuse values which cannot work (a clear usage error, exit 2, never a traceback), and
the decision options the server and `facewire.evaluate` share."""

from __future__ import annotations

import argparse
import ipaddress
import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from facewire.faces.settings import DECISIONS, MatchSettings

Number = TypeVar("Number", int, float)


def bounded(kind: Callable[[str], Number], low: Number | None = None, high: Number | None = None,
            above: bool = False) -> Callable[[str], Number]:
    """A finite `kind` in [low, high]; with `above`, strictly greater than low."""
    if low is not None and high is not None:
        wanted = f"in [{low:g}, {high:g}]"
    else:
        wanted = f"above {low:g}" if above else f"{low:g} or more"

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if above else value < low)) \
                or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {wanted}")
        return value

    return parse


def person_name(text: str) -> str:
    """A gallery name, by the server's own rules (store.check_name)."""
    # imported here: the store imports dlib, which a client (or the HTTP gateway) need not
    from facewire.store.names import EnrolError, check_name

    try:
        return check_name(text)
    except EnrolError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def folder(text: str) -> Path:
    """A folder that exists."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no folder {text}")
    return Path(text)


def folder_to_write(text: str) -> Path:
    """A folder that exists or can be made: not a file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return Path(text)


def file_to_write(text: str) -> Path:
    """A file to (over)write: not a folder, and in a folder that exists."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {path.parent} to write {path.name} in")
    return path


def host_port(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets), for an HTTP address to bind."""
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return parts.hostname, port


def join_host_port(host: str, port: int) -> str:
    """host_port's inverse: HOST:PORT, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The bearer token in `path` (surrounding white space dropped); ValueError if there is none."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {exc}") from None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError(f"the token file {path} must hold one token: printable, without spaces")
    return token


def token_file(text: str) -> Path:
    """A file that holds a bearer token (see read_token)."""
    try:
        read_token(Path(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(text)


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    """--tolerance and the decision rule's options (the server's, and evaluate's)."""
    parser.add_argument("--tolerance", type=bounded(float, 0, 2), default=MatchSettings.tolerance,
                        help="largest face distance named outright; lower is stricter (default: %(default)s)")
    parser.add_argument("--decision", choices=DECISIONS,
                        help="nearest: the nearest person is named within the tolerance; margin: also up to "
                             "--ceiling when every other person is at least --margin further (default: "
                             f"{MatchSettings.decision}, and nearest with --match knn; see README, Choosing the "
                             "tolerance)")
    parser.add_argument("--ceiling", type=bounded(float, 0, 2), metavar="D",
                        help=f"with --decision margin: the largest distance the margin can name (default: "
                             f"{MatchSettings.ceiling - MatchSettings.tolerance:g} above --tolerance)")
    parser.add_argument("--margin", type=bounded(float, 0, 2), metavar="D",
                        help=f"with --decision margin: how much further every other person must be "
                             f"(default: {MatchSettings.margin:g})")


def match_settings(parser: argparse.ArgumentParser, args: argparse.Namespace, method: str = "nearest",
                   k: int | None = None) -> MatchSettings:
    """The MatchSettings of add_decision_options' options; usage errors for options that do not fit."""
    decision = args.decision or (MatchSettings.decision if method == "nearest" else "nearest")
    if decision == "margin" and method != "nearest":
        parser.error("--decision margin goes with --match nearest")
    if decision != "margin" and (args.ceiling is not None or args.margin is not None):
        parser.error("--ceiling and --margin go with --decision margin")
    if args.ceiling is not None and args.ceiling < args.tolerance:
        parser.error(f"--ceiling {args.ceiling:g} is below --tolerance {args.tolerance:g}")
    margin = MatchSettings.margin if args.margin is None else args.margin
    settings = MatchSettings(method=method, k=k, decision=decision, margin=margin).with_tolerance(args.tolerance)
    return settings if args.ceiling is None else replace(settings, ceiling=args.ceiling)
