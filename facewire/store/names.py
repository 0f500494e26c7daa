"""People's names, and the errors a gallery edit can raise (each with its `code` for programs)."""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 100


class EnrolError(ValueError):
    """A name or photo the gallery refuses; each subclass carries its `code` for programs, the message is for people."""

    code = "bad_request"


class BadName(EnrolError):
    code = "bad_name"


class BadPhoto(EnrolError):
    code = "bad_photo"


class NotFound(EnrolError):
    code = "not_found"


def check_name(name: object) -> str:
    """A person's name: any Unicode text, but no path tricks and no control characters."""
    if not isinstance(name, str) or not name.strip():
        raise BadName("name must be a non-empty string")
    name = unicodedata.normalize("NFC", name.strip())
    if len(name) > MAX_NAME_LENGTH:
        raise BadName(f"name is longer than {MAX_NAME_LENGTH} characters")
    if name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise BadName("name must not contain / or \\, nor start with a dot")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise BadName("name must not contain control characters")
    return name
