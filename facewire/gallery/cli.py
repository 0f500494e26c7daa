"""facewire-gallery: the gallery database from the command line.

    facewire-gallery import encodings.npz --who alice
    facewire-gallery export backup.csv
    facewire-gallery list
    facewire-gallery stats --db postgresql://facewire@db.example/gallery

Without --db the gallery is KNOWN_FACES/.facewire.db, the one the server uses by default.
A refusal (a bad file, an unusable database) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import Callable

from facewire.config import default_db_url
from facewire.faces.settings import DETECTORS, DetectorSettings
from facewire.store.backends import DatabaseError, SqliteBackend, backend_for, redact
from facewire.store.database import IMPORTED, SCHEMA_VERSION, Database, open_database
from facewire.store.live import save_index
from facewire.store.transfer import TransferError, read_encodings, write_encodings

EXIT_REFUSED = 2
SIZE_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


class GalleryError(Exception):
    """A refusal of the command's own (not the database's or the file's): printed, exit status 2."""


REFUSALS = (GalleryError, DatabaseError, TransferError, OSError)
"""What the command reports as one line on stderr instead of a traceback."""


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0, or EXIT_REFUSED with the reason on stderr)."""
    args = parse_args(argv)
    try:
        args.run(args)
    except REFUSALS as exc:
        print(f"facewire-gallery: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


# --- the command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The subcommand and its options; `run` is the function that carries it out."""
    parser = argparse.ArgumentParser(prog="facewire-gallery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options()
    imp = _command(commands, common, "import", run_import, "import known encodings from an .npz or .csv file",
                   "facewire-gallery import encodings.npz --who alice")
    imp.add_argument("file", type=Path, metavar="FILE", help=".npz (arrays names, encodings) or .csv (name, 128 numbers)")
    imp.add_argument("--who", default=_login(), help="who the change log says imported (default: %(default)s)")
    _detector_option(imp, "the index saved is for a server run with this --detector")
    exp = _command(commands, common, "export", run_export, "export the gallery's encodings to an .npz or .csv file",
                   "facewire-gallery export backup.csv")
    exp.add_argument("file", type=Path, metavar="FILE", help="the file to write (.npz or .csv), replaced whole")
    exp.add_argument("--encoder", metavar="TAG",
                     help=f"export this encoder's vectors only (default: the {IMPORTED!r} ones and those of the "
                          "server's settings, see --detector)")
    _detector_option(exp, "without --encoder: export the vectors of a server run with this --detector")
    _command(commands, common, "list", run_list, "list the people in the gallery and their photo counts",
             "facewire-gallery list --known-faces /srv/faces")
    _command(commands, common, "stats", run_stats, "show the gallery's counts, encoders, size and schema version",
             "facewire-gallery stats --db sqlite:////srv/faces/.facewire.db")
    return parser.parse_args(argv)


def _detector_option(parser: argparse.ArgumentParser, meaning: str) -> None:
    parser.add_argument("--detector", choices=DETECTORS, default=DetectorSettings.detector,
                        help=f"{meaning} (default: %(default)s)")


def _common_options() -> argparse.ArgumentParser:
    """--db and --known-faces, which every subcommand takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=gallery_url, metavar="URL",
                        help="the gallery database: sqlite:///PATH or postgresql://... "
                             "(default: KNOWN_FACES/.facewire.db)")
    common.add_argument("--known-faces", type=Path, default=Path("known_faces"), metavar="DIR",
                        help="the known-faces folder, whose .facewire.db is the default database (default: %(default)s)")
    return common


def _command(commands: argparse._SubParsersAction, common: argparse.ArgumentParser, name: str,
             run: Callable[[argparse.Namespace], None], summary: str, example: str) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does in one line and shows an example."""
    command = commands.add_parser(name, parents=[common], help=summary, description=summary + ".",
                                  epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    command.set_defaults(run=run)
    return command


def gallery_url(text: str) -> str:
    """An argparse type: a URL naming a backend facewire supports."""
    try:
        backend_for(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _login() -> str:
    """The login name, the change log's default `who` for an import."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "facewire-gallery"


def database_url(args: argparse.Namespace) -> str:
    """--db, or the default database inside --known-faces."""
    return args.db or default_db_url(args.known_faces)


def open_existing(url: str) -> Database:
    """The gallery at `url`, never created: GalleryError if its SQLite file is not there."""
    backend = backend_for(url)
    if isinstance(backend, SqliteBackend) and not backend.path.exists():
        raise GalleryError(f"no gallery database at {backend.path} (the server creates it at start, or import one)")
    return open_database(url, create=False)


# --- the subcommands -------------------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> None:
    """Validate the whole file, then import every row in one transaction (a refusal imports nothing); then
    save the index of a big gallery, as the server's start would."""
    start, url = time.monotonic(), database_url(args)
    encodings = read_encodings(args.file)
    with open_database(url) as db:
        count = db.import_vectors(zip(encodings.names, encodings.encodings), who=args.who, encoder=IMPORTED)
        print(f"imported {count} encodings of {len(set(encodings.names))} people from {args.file} into "
              f"{redact(url)} ({time.monotonic() - start:.2f} s)")
        start = time.monotonic()
        saved = save_index(db, url, DetectorSettings(args.detector))  # so that the next server start maps it at once
    if saved is not None:
        print(f"saved the gallery's index for the server's workers ({time.monotonic() - start:.2f} s)")


def run_export(args: argparse.Namespace) -> None:
    """Write the vectors of one encoder, and every imported one, in photo order, to an .npz or .csv file."""
    url = database_url(args)
    tag = args.encoder or DetectorSettings(args.detector).encoding_tag()
    with open_existing(url) as db:
        snapshot = db.snapshot(tag)  # one transaction: the encoder's vectors and the imported ones
    count = write_encodings(args.file, (snapshot.names, snapshot.vectors))
    print(f"exported {count} encodings of {len(set(snapshot.names))} people (encoders: {IMPORTED}, {tag}) "
          f"from {redact(url)} to {args.file}")


def run_list(args: argparse.Namespace) -> None:
    """One line per person (name, photo count, aligned), then the totals."""
    with open_existing(database_url(args)) as db:
        people = db.people()
    name_width = max(map(len, people), default=0)
    count_width = len(str(max(people.values(), default=0)))
    for name, photos in people.items():
        print(f"{name:<{name_width}}  {photos:>{count_width}}")
    print(f"total: {plural(len(people), 'person', 'people')}, {plural(sum(people.values()), 'photo', 'photos')}")


def run_stats(args: argparse.Namespace) -> None:
    """The gallery's counts, encoders, size, schema version and (password redacted) URL."""
    url = database_url(args)
    with open_existing(url) as db:
        stats = db.stats()
    rows = [("database", redact(url)), ("schema version", str(SCHEMA_VERSION)),
            ("people", str(stats.people)), ("photos", str(stats.photos)),
            ("imported", f"{stats.without_bytes} encodings with no photo, kept whatever the encoder"),
            ("encoders", ", ".join(stats.encoders) or "none"), ("size", human_size(stats.size_bytes))]
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"{label + ':':<{width}} {value}")


def plural(count: int, one: str, many: str) -> str:
    """1 -> '1 person', 2 -> '2 people'."""
    return f"{count} {one if count == 1 else many}"


def human_size(size: int) -> str:
    """A byte count for people: '812 bytes', '1.5 KiB', '20.0 MiB'."""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(SIZE_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{size} bytes" if unit == 0 else f"{value:.1f} {SIZE_UNITS[unit]}"
