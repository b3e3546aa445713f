"""SIGINT / SIGTERM during training take effect at a step boundary only.

While a :class:`StepBoundaryInterrupts` is active the two signals just record themselves; the
training loop asks :attr:`requested` between steps, so the step under way (loss, backward,
optimizer step, EMA update, step counter) completes and the checkpoint then written holds a
consistent state: resuming from it continues exactly as the uninterrupted run. The loop then
raises :class:`TrainingInterrupted`, which the command line turns into one line and exit code
128 + signal (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import threading

from flowforge.errors import FlowforgeError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(FlowforgeError):
    """Training stopped at a step boundary on a signal, after writing a consistent checkpoint."""

    def __init__(self, signum: int, step: int, run_dir):
        self.signum, self.step, self.run_dir = signum, step, run_dir
        self.exit_code = 128 + int(signum)
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: stopped after step {step} with a checkpoint at step {step} "
                         f"(continue with: flowforge train --resume --run-dir {run_dir})")


class StepBoundaryInterrupts:
    """Context manager: SIGINT and SIGTERM set `signum` instead of interrupting (main thread only;
    elsewhere it installs nothing). A second SIGINT while one is pending interrupts at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: the user wants out now
        if self.signum is None:
            self.signum = signum
            print(f"\n{signal.Signals(signum).name} received: finishing the current step, then saving a checkpoint "
                  "(press Ctrl-C again to stop at once, without saving)", file=sys.stderr)

    def __enter__(self) -> "StepBoundaryInterrupts":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
