"""Graceful stop on SIGTERM / SIGINT, the same way in every long-running tool.

The first signal sets :attr:`Stopper.stop` (the loop finishes its current unit of work, saves what it
has and exits); a second SIGINT raises ``KeyboardInterrupt`` to stop at once. Old handlers come back
on exit. ``Stopper.signum`` remembers which signal asked, so a CLI can exit 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from .log import log

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Stopper:
    """Context manager: installs the handlers (main thread only) and restores them on exit."""

    def __init__(self, message: str = "finishing the current frame and shutting down",
                 say: Callable[[str], None] = log):
        self.stop = threading.Event()
        self.signum: int | None = None
        self.message = message
        self.say = say
        self._old: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.stop.is_set()

    @property
    def exit_code(self) -> int | None:
        """130 after SIGINT, 143 after SIGTERM, None when no signal came."""
        return EXIT_CODES.get(signal.Signals(self.signum)) if self.signum is not None else None

    def _handler(self, signum: int, _frame) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum
        self.stop.set()
        self.say(f"{signal.Signals(signum).name}: {self.message}")

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *_) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old.clear()
