"""Host work one step behind the device: the pattern of the train loop, evaluation and
prediction. JAX dispatches asynchronously, so reading step i's results (a device-to-host
copy that waits for them) right after dispatching step i + 1 overlaps the host's reading,
decoding and logging with the device's next computation."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class OneBehind(Generic[T]):
    """Holds the latest dispatched item until the next one is dispatched.

    ``previous = lag.push(item)`` after dispatching ``item`` returns the item dispatched
    before it (None the first time): the one to read now. ``lag.flush()`` returns the held
    item (None if there is none) and empties the holder, for the end, or wherever results
    must be read at once (before a checkpoint, before logging).
    """

    def __init__(self):
        self._held: T | None = None

    def push(self, item: T) -> T | None:
        previous, self._held = self._held, item
        return previous

    def flush(self) -> T | None:
        held, self._held = self._held, None
        return held
