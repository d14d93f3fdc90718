"""Progress display for fit: a tqdm bar when tqdm is installed (an optional dependency), else one line per
epoch. ``verbose``: 0 silent, 1 a bar per epoch, 2 one line per epoch (Keras's meanings)."""
from __future__ import annotations

import sys
import time

try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional: fall back to a line per epoch
    tqdm = None


def format_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class EpochProgress:
    def __init__(self, epoch: int, epochs: int, total_steps: int, verbose: int, file=None):
        self.desc = f"Epoch {epoch + 1}/{epochs}"
        self.verbose = verbose
        self.file = file if file is not None else sys.stderr
        self.start = time.perf_counter()
        self.bar = None
        if verbose == 1 and tqdm is not None:
            self.bar = tqdm(total=total_steps, desc=self.desc, unit="batch", leave=True, file=self.file,
                            dynamic_ncols=True)

    def step(self, **figures) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in figures.items()}, refresh=False)
            self.bar.update(1)

    def close(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
            self.bar.close()
        elif self.verbose:
            elapsed = time.perf_counter() - self.start
            print(f"{self.desc} - {elapsed:.1f}s - {format_logs(logs)}", file=self.file, flush=True)
