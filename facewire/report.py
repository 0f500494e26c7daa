"""A report of a folder run: one row per face (or per image with no face, or per error), as CSV or JSON.

Written atomically (a temp file, then rename), so a report is complete or absent.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIELDS = ["file", "face", "name", "distance", "top", "right", "bottom", "left", "error"]


@dataclass
class Report:
    """Results gathered image by image; `write` picks CSV or JSON from the file's suffix."""

    images: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: Path, faces: list[dict[str, Any]]) -> None:
        self.images.append({"file": str(path), "faces": faces})

    def add_error(self, path: Path, error: str) -> None:
        self.images.append({"file": str(path), "faces": [], "error": error})

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for image in self.images:
            base = {"file": image["file"], "error": image.get("error", "")}
            if not image["faces"]:
                rows.append({**base, "face": ""})
            for index, face in enumerate(image["faces"]):
                top, right, bottom, left = face["box"]
                rows.append({**base, "face": index, "name": face["name"], "distance": face["distance"],
                             "top": top, "right": right, "bottom": bottom, "left": left})
        return rows

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return json.dumps(self.images, ensure_ascii=False, indent=1) + "\n"
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, FIELDS, restval="")
        writer.writeheader()
        writer.writerows(self.rows())
        return buffer.getvalue()

    def write(self, path: Path) -> None:
        fmt = "json" if path.suffix.lower() == ".json" else "csv"
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(self.render(fmt))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
