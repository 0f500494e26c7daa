"""A pytest plugin for mutmut's test runs only (loaded with -p by [tool.mutmut] pytest_add_cli_args).

mutmut forks each mutant's test session from the process that ran the clean tests, so anything
memoised there was computed by the unmutated code: a mutant of a function behind a cache would
be read from the cache, never run, and survive. Every session starts with empty caches.
"""

from __future__ import annotations


def pytest_sessionstart(session) -> None:
    from facewire.faces import draw

    draw._strip_size.cache_clear()
