"""Supervised worker threads: a stage that raises is reported, marked as retrying and restarted with
backoff; a stage whose body returns has ended. No stage can take the session down."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if text else type(exc).__name__


@dataclass
class StageState:
    name: str
    state: str = "off"  # off | running | retrying | ended
    error: str = ""
    restarts: int = 0

    @property
    def ok(self) -> bool:
        return self.state == "running"


class Supervisor:
    """Runs stage bodies in daemon threads. ``on_error(stage, message)`` is called from the failing
    thread; ``on_fail`` of the stage runs before the backoff wait (e.g. to mark data absent)."""

    def __init__(
        self,
        stop: threading.Event,
        on_error: Callable[[str, str], None],
        retry_min: float = 0.5,
        retry_max: float = 5.0,
    ) -> None:
        self.stop, self.on_error = stop, on_error
        self.retry_min, self.retry_max = retry_min, retry_max
        self.stages: dict[str, StageState] = {}
        self.threads: list[threading.Thread] = []

    def spawn(self, name: str, body: Callable[[], None], on_fail: Callable[[], None] | None = None) -> None:
        self.stages[name] = StageState(name)
        t = threading.Thread(target=self._run, args=(name, body, on_fail), name=f"fine-{name}", daemon=True)
        self.threads.append(t)
        t.start()

    def _run(self, name: str, body: Callable[[], None], on_fail: Callable[[], None] | None) -> None:
        st, delay = self.stages[name], self.retry_min
        while not self.stop.is_set():
            st.state, started = "running", time.monotonic()
            try:
                body()
                st.state = "ended"
                return
            except Exception as exc:
                st.state, st.error = "retrying", one_line(exc)
                st.restarts += 1
                log.info(  # reported through on_error (the window or the CLI shows it)
                    "%s failed (%s); retrying in %.1f s",
                    name,
                    st.error,
                    delay,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                self._safe(lambda: self.on_error(name, st.error))
                if on_fail is not None:
                    self._safe(on_fail)
            if time.monotonic() - started > 30:  # it had worked for a while: start the backoff afresh
                delay = self.retry_min
            if self.stop.wait(delay):
                break
            delay = min(2 * delay, self.retry_max)
        st.state = "off"

    @staticmethod
    def _safe(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("error handler failed")

    def join(self, timeout: float) -> list[str]:
        """Wait for the threads; names of those still running after ``timeout`` (in total)."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]


class RateMeter:
    """Events per second over the last ``span`` seconds of wall time."""

    def __init__(self, span: float = 2.0) -> None:
        self.span = span
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self._times.append(now)
            while self._times and now - self._times[0] > self.span:
                self._times.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] > self.span:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-6)
