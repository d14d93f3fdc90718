"""Callbacks for Sequential.fit: hooks called at the start of training and the end of every epoch."""
from __future__ import annotations

import math


class Callback:
    def on_train_begin(self, model) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict, model) -> None:
        """``logs`` holds this epoch's figures (loss, accuracy, val_loss, ...); set ``model.stop_training``
        to end training after this epoch."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs (Keras's
    semantics). ``mode`` "min", "max", or "auto" (max for accuracies, min otherwise).
    ``restore_best_weights`` puts back the parameters of the best epoch when training stops."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 restore_best_weights: bool = False):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.restore_best_weights = restore_best_weights
        self.stopped_epoch = None

    def on_train_begin(self, model):
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_params = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None

    def _improved(self, value: float) -> bool:
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_epoch_end(self, epoch, logs, model):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, but the epoch logs only have "
                           f"{sorted(logs)}; pass validation_data to fit() to get val_* figures")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_params = model.params  # parameters are never mutated in place: no copy needed
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            model.stop_training = True
            if self.restore_best_weights and self.best_params is not None:
                model.params = self.best_params
