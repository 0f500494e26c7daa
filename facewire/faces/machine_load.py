"""Whether this machine has a core to spare now, from /proc: a second thread for one picture only pays then."""

from __future__ import annotations

import os
import time

FRESH_SECONDS = 0.02
"""How long an answer of `second_thread` holds: a picture's detection and encoding ask one after the other."""
_last: list[float | bool] = [-1.0, False]


def second_thread(detect_threads: str) -> bool:
    """Whether a picture's detection or encoding may use a second thread now: "2" always, "1" never, "auto"
    when a core is idle (the answer of the last FRESH_SECONDS)."""
    if detect_threads != "auto":
        return detect_threads == "2"
    now = time.monotonic()
    if now - _last[0] > FRESH_SECONDS:
        _last[:] = [now, idle_core()]
    return bool(_last[1])


def idle_core(looks: int = 4, interval: float = 0.0005) -> bool:
    """Whether a core of this machine is idle now: whether, at one of `looks` moments `interval` s
    apart, the threads runnable elsewhere left a core for each of two threads here. Several looks,
    because a thread about to sleep (the client that just sent this request) is runnable for a
    moment; a busy worker is runnable at every look. On a busy machine a second thread only slows
    the other workers down."""
    spare = len(os.sched_getaffinity(0)) - 2
    for look in range(looks):
        if look:
            time.sleep(interval)
        if _runnable_elsewhere() <= spare:
            return True
    return False


def _runnable_elsewhere() -> int:
    """Threads runnable on this machine now that are not this process's; a large number when
    /proc cannot tell."""
    try:
        return _runnable_on_machine() - sum(_task_state(task.path) == "R" for task in os.scandir("/proc/self/task"))
    except (OSError, ValueError, IndexError):
        return 1 << 30


def _runnable_on_machine() -> int:
    """Threads runnable on this machine now, this process's included (/proc/loadavg's fourth field)."""
    with open("/proc/loadavg") as file:
        return int(file.read().split()[3].split("/")[0])


def _task_state(task: str) -> str:
    """A thread's state letter ("R" runnable) from /proc/PID/task/TID/stat; "" if it has ended."""
    try:
        with open(os.path.join(task, "stat")) as file:
            return file.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return ""
