"""Progress of long jobs: a tqdm bar on a terminal, a plain line every few seconds otherwise.

A job whose output goes to a file or a pipe (``diffusekit train ... > log``, CI, a notebook's
captured stdout) gets a line every ``interval`` seconds with the step, the loss, the rate and
the time left; a short job prints nothing. ``DIFFUSEKIT_PROGRESS_INTERVAL`` sets the interval
(seconds, default 10).
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _interval() -> float:
    from .settings import env_seconds

    return env_seconds("DIFFUSEKIT_PROGRESS_INTERVAL", 10.0)


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """``Progress(total, desc, initial=0, enabled=True)``; ``update(n=1, **values)``; ``close()``.

    On a terminal (``stream.isatty()``) this is a tqdm bar; otherwise :meth:`update` prints
    ``desc: step 1200/3000 (40%), loss 0.0312, 25.1 steps/s, ETA 1:12`` at most once per
    interval."""

    def __init__(self, total: int, desc: str, initial: int = 0, enabled: bool = True, stream=None,
                 interval: float | None = None, unit: str = "step"):
        self.total, self.desc, self.n, self.unit = total, desc, initial, unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        self.values: dict[str, Any] = {}
        self.bar = None
        self.interval = _interval() if interval is None else interval
        self._start_n = initial
        self._t0 = self._last = time.perf_counter()
        self.lines = 0
        if enabled and _isatty(sys.stderr) and _isatty(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False)

    def update(self, n: int = 1, **values: Any) -> None:
        self.n += n
        self.values.update(values)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            if values:
                self.bar.set_postfix({k: _fmt(v) for k, v in values.items()}, refresh=False)
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self.print_line(now)

    def print_line(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        done = self.n - self._start_n
        rate = done / max(now - self._t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        parts = [f"{self.unit} {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%)"]
        parts += [f"{k} {_fmt(v)}" for k, v in self.values.items()]
        parts.append(f"{rate:.1f} {self.unit}s/s")
        if eta != float("inf"):
            parts.append(f"ETA {_fmt_seconds(eta)}")
        print(f"{self.desc}: " + ", ".join(parts), file=self.stream, flush=True)
        self.lines += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.lines:  # a job that reported progress also reports its end
            self.print_line()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
