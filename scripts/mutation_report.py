"""Summarise a mutmut run: killed / total per module, the survivors, and which of them are listed as equivalent.

Reads mutmut's result files (mutants/facewire/**/*.py.meta) and tests/mutation_equivalents.txt
(one `mutant-name  reason` per line). Exit status 1 when a survivor is neither killed nor listed.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

CORE = ("faces/matching.py", "wire/protocol.py", "serve/service.py", "client/pipeline.py", "client/video.py",
        "faces/draw.py")
"""The modules the score is over; any other mutated module (client/client.py) is reported beside them."""
KILLED = {1, 3}
SURVIVED = {0}
STATUS = {0: "survived", 1: "killed", 3: "killed", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check", None: "not checked",
          -11: "segfault", -9: "segfault"}


def load_equivalents(path: Path) -> dict[str, str]:
    listed = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                listed[name] = reason.strip()
    return listed


def main(root: Path = Path(".")) -> int:
    equivalents = load_equivalents(root / "tests" / "mutation_equivalents.txt")
    metas = sorted((root / "mutants").glob("facewire/**/*.py.meta"))
    if not metas:
        print("no mutmut results under mutants/: run scripts/mutation.sh", file=sys.stderr)
        return 2
    rows, survivors, timeouts, others = [], [], [], []
    totals = Counter()
    for meta in sorted(metas, key=lambda m: (_module(root, m) not in CORE, _module(root, m))):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = _module(root, meta)
        count = Counter(STATUS.get(code, "suspicious") for code in codes.values())
        count["total"] = len(codes)
        count["listed"] = sum(1 for name, code in codes.items() if code in SURVIVED and name in equivalents)
        rows.append((module, count))
        if module in CORE:
            totals.update(count)
        for name, code in sorted(codes.items(), key=lambda item: _natural(item[0])):
            status = STATUS.get(code, "suspicious")
            if status == "survived":
                survivors.append(name)
            elif status == "timeout":
                timeouts.append(name)
            elif status != "killed":
                others.append((name, status))

    def row(label: str, count: Counter) -> str:
        caught = count["killed"] + count["timeout"]
        return (f"{label:<20} {count['killed']:>7} {count['timeout']:>8} {count['survived']:>9} {count['listed']:>7} "
                f"{count['total'] - caught - count['survived']:>6} {count['total']:>6} "
                f"{caught / max(count['total'], 1):>7.1%}")

    print(f"{'module':<20} {'killed':>7} {'timeout':>8} {'survived':>9} {'listed':>7} {'other':>6} {'total':>6} "
          f"{'score':>7}")
    print("  (score: killed or timed out / total; listed: survivors listed as equivalent)")
    for module, count in rows:
        if module in CORE:
            print(row(module, count))
    print("-" * 78)
    print(row("core total", totals))
    extra = [(module, count) for module, count in rows if module not in CORE]
    if extra:
        print("not in the core score:")
        for module, count in extra:
            print(row(module, count))
    unexplained = [name for name in survivors if name not in equivalents]
    print(f"\nsurviving mutants: {len(survivors)} ({len(survivors) - len(unexplained)} listed as equivalent "
          f"in tests/mutation_equivalents.txt)")
    for name in survivors:
        print(f"  {name}: {equivalents.get(name, 'NOT LISTED: kill it with a test, or list it with a reason')}")
    if timeouts:
        print(f"\ntimed out (counted as caught: the tests hung or ran far past their usual time): {len(timeouts)}")
        for name in timeouts:
            print(f"  {name}")
    if others:
        print(f"\nneither killed nor survived: {len(others)}")
        for name, status in others:
            print(f"  {name}: {status}")
    stale = sorted(set(equivalents) - set(survivors))
    if stale:
        print(f"\nlisted as equivalent but not surviving this run (killed, or renamed): {len(stale)}")
        for name in stale:
            print(f"  {name}")
    return 1 if unexplained or others else 0


def _module(root: Path, meta: Path) -> str:
    """faces/matching.py for mutants/facewire/faces/matching.py.meta."""
    return meta.relative_to(root / "mutants" / "facewire").as_posix().removesuffix(".meta")


def _natural(name: str) -> tuple[str, int]:
    """facewire.x__f__mutmut_9 before facewire.x__f__mutmut_10."""
    stem, _, number = name.rpartition("_")
    return (stem, int(number)) if number.isdigit() else (name, 0)


def survivors(root: Path = Path(".")) -> int:
    """Print the names of the last run's mutants that survived or were not decided, one a line."""
    for meta in sorted((root / "mutants").glob("facewire/**/*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if STATUS.get(code, "suspicious") not in ("killed", "timeout"):
                print(name)
    return 0


if __name__ == "__main__":
    sys.exit(survivors() if sys.argv[1:] == ["--survivors"] else main())
