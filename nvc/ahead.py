"""Run a function over a sequence ahead of its consumer, on one worker thread.

The decoder's entropy stage (range decoding and the fixed-point hyper-synthesis) needs nothing from
the frames before it, so `nvc decode` runs it a few frames ahead while the synthesis transforms
reconstruct the current frame: the range coder and the exact hyper-synthesis then use a second
core (+12-17% decode fps at 416x240 on 2 idle cores), or overlap the GPU's network. What each stage
computes does not change, only when.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, TypeVar

from .workers import let_go

T = TypeVar("T")
R = TypeVar("R")
_END: Any = object()  # the end of the items


class Ahead(Generic[T, R]):
    """Iterating yields (item, get): get() returns fn(item), computed up to `depth` items ahead on
    the worker (depth 0: in the consumer's thread, when get is called), or raises what fn raised,
    so the consumer decides where an item's error surfaces; an error drawing the items (a stream
    cut short) is raised after every item drawn before it has been given out, as at depth 0."""

    def __init__(self, items: Iterable[T], fn: Callable[[T], R], depth: int,
                 ready: Callable[[], bool] = lambda: True):
        """`ready`: whether drawing the next item would not wait (items read from a pipe): the
        items after the current one are drawn only while it says so, so a live stream's frame
        is handed on as soon as it arrives, not once `depth` more have."""
        self.items, self.fn, self.depth, self.ready = items, fn, depth, ready

    def __len__(self) -> int:  # for progress bars; items drawn from a generator have none
        if not isinstance(self.items, Sized):
            raise TypeError("Ahead over an iterator has no length")
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[T, Callable[[], R]]]:
        if self.depth <= 0:
            for item in self.items:
                yield item, partial(self.fn, item)
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="nvc-ahead")
        pending: deque[tuple[T, Future[R]]] = deque()
        upcoming, drawn = iter(self.items), True
        failed: Exception | None = None  # drawing failed: raised once the items before are out
        try:
            while True:
                while drawn and len(pending) <= self.depth and (not pending or self.ready()):
                    try:
                        item = next(upcoming, _END)
                    except Exception as e:
                        failed, item = e, _END
                    drawn = item is not _END
                    if drawn:
                        pending.append((item, pool.submit(self.fn, item)))
                if not pending:
                    if failed is not None:
                        raise failed
                    return
                item, future = pending.popleft()
                yield item, future.result
        finally:  # a consumer that stops early (or an error) leaves no work running
            let_go(pool)


def mapped_ahead(items: Iterable[T], fn: Callable[[T], R], depth: int,
                 ready: Callable[[], bool] = lambda: True) -> Iterator[R]:
    """fn(item) for each item in order, each computed on the worker while the items after it are
    drawn (the decoder's colour conversion of frame i beside the synthesis of frame i + 1);
    `ready`: see Ahead."""
    for _, result in Ahead(items, fn, depth, ready):
        yield result()


class Numbered(Generic[T]):
    """(index, item) for each of `items`, with a length where one is given (for progress bars)."""

    def __init__(self, items: Iterable[T], count: int | None = None):
        self.items, self.count = items, count

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError("no length: the count is not known")
        return self.count

    def __iter__(self) -> Iterator[tuple[int, T]]:
        return enumerate(self.items)
