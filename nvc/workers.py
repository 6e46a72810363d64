"""Thread pools the process shares (the range coder's runs, the transforms' stripes), and how
a pool is let go so that a Ctrl-C cannot stall or crash the exit.

A ThreadPoolExecutor queues work, then starts a thread for it if it has fewer than its number, and
counts that thread among its own (and among those woken at exit) only once Thread.start returns.
A Ctrl-C (KeyboardInterrupt) inside that start leaves a thread nobody counts: idle, the
interpreter waits for it forever as it exits (`nvc encode -o -` interrupted as frame 0's stripes
started hung so in CI); not yet running, it may start only after the interpreter has joined its
threads and run the queued work as the interpreter finalizes, which aborts the process (a
torch call cannot take the interpreter back: "terminate called without an active exception").
So a pool is let go with `let_go`: the work not yet started is cancelled and the pool shut down,
which wakes every thread, counted or not, to find nothing to run. The codec's own pools do so
as they end; `release()` does so for the shared ones, without waiting, and runs as the
interpreter exits, before it joins its threads (where ThreadPoolExecutor's own wake-up runs:
threading._register_atexit), so every entry point is covered, nvc's commands, the benchmarks and
training alike. A shared pool asked for after a release is a new one.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_lock = threading.Lock()  # the intra trial's thread and the main one may both start a pool


def shared(name: str, threads: int) -> ThreadPoolExecutor:
    """The process's pool of `threads` threads named `name`_i, started on first use."""
    with _lock:
        pool = _pools.get((name, threads))
        if pool is None:
            pool = _pools[name, threads] = ThreadPoolExecutor(threads, thread_name_prefix=name)
        return pool


def release() -> None:
    """Let every shared pool go, not waiting for the work running: their idle threads end."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        let_go(pool, wait=False)


def let_go(pool: ThreadPoolExecutor, wait: bool = True) -> None:
    """Cancel the work `pool` has not started and shut it down (waiting for the work running where
    `wait`): no thread of it is left idle or starts work later (see above)."""
    pool.shutdown(wait=wait, cancel_futures=True)


# CPython's hook for what runs before the threads are joined at exit (concurrent.futures uses it)
_before_joining = getattr(threading, "_register_atexit", None)
if _before_joining is not None:
    _before_joining(release)
