"""A pytest plugin that :mod:`scripts.mutation` loads into every mutation run.

Before each test it clears every ``functools`` cache of the project's modules. A function
called only while a cached table is built (a MinAtar game's rule helpers, e.g. Asterix's
``_timers``) would otherwise run once per process, in whichever test first built the table:
its mutants would run in no test, or be attributed to that one test only, and survive.
"""

from __future__ import annotations

import sys

PROJECT = ("train", "agents", "envs", "runner", "plasticity", "replay")


def pytest_runtest_setup(item) -> None:
    for name, module in list(sys.modules.items()):
        if module is None or name.partition(".")[0] not in PROJECT:
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()
