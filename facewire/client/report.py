"""A report of a folder run: one row per face (or per image with no face, or per error), as CSV or JSON.

Written atomically (a temp file, then rename), so a report is complete or absent.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facewire.files import write_atomically
from facewire.wire.protocol import FaceResult

FIELDS = ["file", "face", "name", "distance", "top", "right", "bottom", "left", "error"]


@dataclass
class Report:
    """Results gathered image by image; `write` picks CSV or JSON from the file's suffix."""

    images: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: Path, faces: list[FaceResult]) -> None:
        self.images.append({"file": str(path), "faces": [face.to_json() for face in faces]})

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
        text = self.render(fmt).encode("utf-8")
        write_atomically(Path(path), lambda f: f.write(text), prefix=Path(path).name)
