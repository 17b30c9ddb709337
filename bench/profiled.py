"""``python -m bench.profiled OUT MODULE [ARGS...]``: run MODULE as ``__main__`` under a profiler.

The benchmarks' ``--profile DIR`` starts services this way; the stats (``pstats`` format) are
written to OUT when the module returns, also after SIGTERM (the services stop gracefully on it).
Read them with ``python -m pstats OUT`` (``sort tottime``, ``stats 30``).

By default the profiler is cProfile: wall-clock time, the main thread (the event loop) only, so
time spent waiting for the interpreter lock, held by another thread, is charged to whatever the
loop was running. With ``CHATMESH_BENCH_PROFILER=yappi`` (``pip install yappi``, not a project
dependency) it is yappi on CPU time over every thread, the CQL driver's I/O thread included.
"""

from __future__ import annotations

import cProfile
import importlib
import os
import runpy
import sys


def main() -> None:
    """Run the module named on the command line and dump its profile."""
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m bench.profiled OUT MODULE [ARGS...]")
    out, module = sys.argv[1], sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    if os.environ.get("CHATMESH_BENCH_PROFILER") == "yappi":
        yappi = importlib.import_module("yappi")
        yappi.set_clock_type("cpu")
        yappi.start(builtins=True, profile_threads=True)
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        finally:
            yappi.stop()
            yappi.get_func_stats().save(out, type="pstat")
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
