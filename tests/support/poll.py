"""Bounded polling that says what it waited for (never a bare busy-wait)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable


def wait_until(cond: Callable[[], object], what: str, timeout: float = 30.0,
               interval: float = 0.0) -> None:
    """Poll ``cond`` until true; fail after ``timeout`` s naming ``what``.

    ``interval`` 0 suits qtest: each poll is a round trip to QEMU, which is
    what lets the device's bottom halves and timers run."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        if interval:
            time.sleep(interval)


async def async_wait_until(cond: Callable[[], object], what: str, timeout: float = 30.0,
                           interval: float = 0.05) -> None:
    """:func:`wait_until` for the event loop."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def within(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound a wait: past ``seconds``, the wait is cancelled and the test fails
    naming ``what`` it waited for (instead of timing it afterwards)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise AssertionError(f"not done within {seconds:g} s: {what}") from None
