"""Sequential: a stack of layers with a functional core and a Keras-like training front.

Functional core (pure; parameters are a dict {layer name: {weight name: array}}):
    params, output_shape = model.init(key, input_shape)      # input_shape of one example, no batch dim
    outputs = model.apply(params, x, key=None, training=False)
Keras-like front (keeps params and optimizer state on the model):
    model.compile(loss="cross_entropy", optimizer=kf.optim.Adam(1e-3), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=3, validation_data=(x_val, y_val))
    model.evaluate(x, y) -> {"loss": ..., "accuracy": ...};  model.predict(x);  model.save(p) / model.load(p)

The training step (forward, loss, backward through kf.value_and_grad, optimizer update) is ONE kf.jit
function. Every batch has the same shape: the last, smaller batch is padded and its padding rows get zero
weight in the loss, so each step function is traced and compiled once.
"""
from __future__ import annotations

import os

import numpy as np

from . import initializers
from .callbacks import Callback
from .layer import Layer
from .losses import METRICS, get_loss
from .progress import EpochProgress, format_logs


def _kf():
    import kernelflow  # noqa: PLC0415 (kernelflow imports kf.nn)
    return kernelflow


def _unique_names(layers) -> list[str]:
    return [f"{layer.name}_{i}" for i, layer in enumerate(layers)]


class Sequential:
    def __init__(self, layers, backend: str = "numba"):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a kf.nn layer")
        self.layers = layers
        self.names = _unique_names(layers)
        self.backend = backend
        self.params = None
        self.input_shape = None
        self.output_shape = None
        self.optimizer = None
        self.opt_state = None
        self.stop_training = False
        self._steps = {}

    # -- functional core --------------------------------------------------------------------------
    def init(self, key, input_shape):
        """Initialise every layer: ``(params, output_shape)``. ``key`` is a kf.random key or an int seed."""
        shape = tuple(int(d) for d in input_shape)
        keys = initializers.split_key(key, len(self.layers))
        params = {}
        for name, layer, layer_key in zip(self.names, self.layers, keys):
            try:
                layer_params, shape = layer.init(layer_key, shape)
            except ValueError as e:
                raise ValueError(f"Sequential layer {name}: {e}") from None
            if layer_params:
                params[name] = layer_params
        return params, shape

    def apply(self, params, x, key=None, training: bool = False):
        random_layers = [i for i, layer in enumerate(self.layers) if layer.uses_key]
        if training and random_layers and key is None:
            raise ValueError("this model has random layers (Dropout): apply(..., training=True) needs a key")
        layer_keys = {}
        if training and key is not None and random_layers:
            if len(random_layers) == 1:
                layer_keys = {random_layers[0]: key}
            else:
                split = _kf().random.split(key, len(random_layers))
                layer_keys = {i: split[j] for j, i in enumerate(random_layers)}
        for i, (name, layer) in enumerate(zip(self.names, self.layers)):
            x = layer.apply(params.get(name, {}), x, key=layer_keys.get(i), training=training)
        return x

    def regularization(self, params):
        """The sum of the layers' L2 penalties (0.0 when none has ``l2``)."""
        total = 0.0
        for name, layer in zip(self.names, self.layers):
            if layer.l2:
                total = total + layer.regularization(params[name])
        return total

    __call__ = apply

    # -- building and inspecting ------------------------------------------------------------------
    def build(self, input_shape, key=0):
        """Initialise the model's own parameters for examples of ``input_shape``."""
        self.params, self.output_shape = self.init(key, input_shape)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.opt_state = self.optimizer.init(self.params) if self.optimizer is not None else None
        return self

    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(int(a.size) for p in self.params.values() for a in p.values())

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts (also printed)."""
        self._require_built("summary")
        lines = [f"{'layer':<20}{'output shape':<24}{'params':>10}"]
        shape = self.input_shape
        for name, layer in zip(self.names, self.layers):
            _, shape = layer.init(0, shape)
            count = sum(int(a.size) for a in self.params.get(name, {}).values())
            lines.append(f"{name:<20}{str(list(shape)):<24}{count:>10}")
        lines.append(f"total parameters: {self.count_params()}")
        text = "\n".join(lines)
        print(text)
        return text

    def _require_built(self, what: str):
        if self.params is None:
            raise RuntimeError(f"{what}: the model has no parameters yet; call model.build(input_shape) or "
                               f"model.fit(...) first")

    # -- Keras-like training ----------------------------------------------------------------------
    def compile(self, loss="cross_entropy", optimizer=None, metrics=(), seed: int = 0):
        """Choose the loss ("cross_entropy" on logits and integer labels, "mse", or a function returning
        per-example losses), the optimizer (default Adam(1e-3)) and metrics (["accuracy"])."""
        for m in metrics:
            if m not in METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {', '.join(METRICS)}")
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
        self.loss_fn = get_loss(loss)
        self.optimizer = optimizer if optimizer is not None else _kf().optim.Adam(1e-3)
        self.metrics = list(metrics)
        self.seed = int(seed)
        self.step_count = 0
        self._steps = {}  # step functions close over the loss and optimizer: rebuild them
        if self.params is not None:
            self.opt_state = self.optimizer.init(self.params)
        return self

    def _objective(self, params, x, y, weights, key):
        outputs = self.apply(params, x, key=key, training=True)
        # weights are 1/n for the batch's n real rows and 0 for padding: the weighted sum is their mean
        loss = np.sum(self.loss_fn(outputs, y) * weights) + self.regularization(params)
        return loss, outputs

    def _train_step(self, params, opt_state, x, y, weights, key):
        kf = _kf()
        (loss, outputs), grads = kf.value_and_grad(self._objective, has_aux=True)(params, x, y, weights, key)
        params, opt_state = self.optimizer.update(grads, opt_state, params)
        return params, opt_state, loss, outputs

    def _eval_step(self, params, x, y, weights):
        outputs = self.apply(params, x, training=False)
        return np.sum(self.loss_fn(outputs, y) * weights), outputs

    def _predict_step(self, params, x):
        return self.apply(params, x, training=False)

    def _step(self, which: str):
        """The kf.jit-compiled step function ``which`` (built once per compile())."""
        if which not in self._steps:
            self._steps[which] = _kf().jit(getattr(self, f"_{which}_step"), backend=self.backend)
        return self._steps[which]

    def _require_compiled(self, what: str):
        if self.optimizer is None:
            raise RuntimeError(f"{what}: call model.compile(loss=..., optimizer=...) first")

    def _inputs(self, x):
        x = np.asarray(x)
        return x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x

    def _targets(self, y):
        y = np.asarray(y)
        if self.loss_name == "cross_entropy":
            if not np.issubdtype(y.dtype, np.integer):
                raise TypeError(f"cross_entropy needs integer class labels, got {y.dtype} (one-hot targets: "
                                f"pass y.argmax(-1))")
            return y.astype(np.int32)
        return y.astype(np.float32) if np.issubdtype(y.dtype, np.floating) else y

    def _padded_batches(self, x, y, batch_size, shuffle, seed, max_steps=None, normalize=False):
        """(x_batch, y_batch, weights, n_real) with every batch padded to batch_size rows; weights are 1 for
        real rows (1/n_real with ``normalize``) and 0 for padding."""
        n = len(x)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        for count, start in enumerate(range(0, n, batch_size)):
            if max_steps is not None and count >= max_steps:
                return
            idx = order[start:start + batch_size]
            real = len(idx)
            weights = np.zeros(batch_size, np.float32)
            weights[:real] = 1.0 / real if normalize else 1.0
            if real < batch_size:  # pad with copies of the first row (valid inputs and labels), weight 0
                idx = np.concatenate([idx, np.full(batch_size - real, idx[0])])
            yield x[idx], (y[idx] if y is not None else None), weights, real

    def _check_data(self, x, y, what):
        if y is not None and len(x) != len(y):
            raise ValueError(f"{what}: x has {len(x)} examples but y has {len(y)}")
        if len(x) == 0:
            raise ValueError(f"{what}: no examples")
        if self.params is None:
            self.build(x.shape[1:], key=getattr(self, "seed", 0))
        elif tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{what}: examples of shape {list(x.shape[1:])}, but the model was built for "
                             f"{list(self.input_shape)}")

    def fit(self, x, y, batch_size: int = 32, epochs: int = 1, validation_data=None, verbose: int = 1,
            callbacks=(), shuffle: bool = True, steps_per_epoch: int | None = None):
        """Train; returns the history {"loss": [per epoch], "accuracy": [...], "val_loss": [...], ...}."""
        self._require_compiled("fit")
        x, y = self._inputs(x), self._targets(y)
        self._check_data(x, y, "fit")
        if self.opt_state is None:
            self.opt_state = self.optimizer.init(self.params)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be kf.nn.Callback objects, got {type(cb).__name__}")
            cb.on_train_begin(self)
        batch_size = min(int(batch_size), len(x))
        steps = -(-len(x) // batch_size)
        if steps_per_epoch is not None:
            steps = min(steps, int(steps_per_epoch))
        train_step = self._step("train")
        needs_key = any(layer.uses_key for layer in self.layers)
        history: dict[str, list[float]] = {}
        self.stop_training = False
        for epoch in range(epochs):
            progress = EpochProgress(epoch, epochs, steps, verbose)
            loss_sum, metric_sums, seen = 0.0, {m: 0.0 for m in self.metrics}, 0
            batches = self._padded_batches(x, y, batch_size, shuffle, (self.seed, epoch), steps, normalize=True)
            for xb, yb, wb, real in batches:
                key = initializers.split_key([self.seed, self.step_count], 1)[0] if needs_key else None
                self.params, self.opt_state, loss, outputs = train_step(self.params, self.opt_state, xb, yb, wb,
                                                                         key)
                self.step_count += 1
                loss = float(loss)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"the training loss became {loss} at epoch {epoch + 1}, step "
                                             f"{self.step_count}; lower the learning rate?")
                loss_sum += loss * real
                for m in self.metrics:
                    metric_sums[m] += float(np.sum(METRICS[m](outputs[:real], yb[:real])))
                seen += real
                progress.step(loss=loss_sum / seen, **{m: metric_sums[m] / seen for m in self.metrics})
            logs = {"loss": loss_sum / seen}
            logs.update({m: metric_sums[m] / seen for m in self.metrics})
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=batch_size, verbose=0)
                logs.update({f"val_{k}": v for k, v in val.items()})
            progress.close(logs)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs, self)
            if self.stop_training:
                break
        return history

    def evaluate(self, x, y, batch_size: int = 32, verbose: int = 0) -> dict[str, float]:
        """The mean loss (without the L2 penalty) and metrics over (x, y): {"loss": ..., "accuracy": ...}."""
        self._require_compiled("evaluate")
        x, y = self._inputs(x), self._targets(y)
        self._check_data(x, y, "evaluate")
        batch_size = min(int(batch_size), len(x))
        eval_step = self._step("eval")
        loss_sum, metric_sums = 0.0, {m: 0.0 for m in self.metrics}
        for xb, yb, wb, real in self._padded_batches(x, y, batch_size, shuffle=False, seed=None):
            loss, outputs = eval_step(self.params, xb, yb, wb)
            loss_sum += float(loss)
            for m in self.metrics:
                metric_sums[m] += float(np.sum(METRICS[m](outputs[:real], yb[:real])))
        result = {"loss": loss_sum / len(x)}
        result.update({m: metric_sums[m] / len(x) for m in self.metrics})
        if verbose:
            print(format_logs(result))
        return result

    def predict(self, x, batch_size: int = 32) -> np.ndarray:
        """The model's outputs for x, batch by batch (inference mode: no dropout)."""
        x = self._inputs(x)
        self._check_data(x, None, "predict")
        batch_size = min(int(batch_size), len(x))
        predict_step = self._step("predict")
        outputs = [predict_step(self.params, xb)[:real]
                   for xb, _, _, real in self._padded_batches(x, None, batch_size, shuffle=False, seed=None)]
        return np.concatenate(outputs)

    # -- saving -----------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the parameters to an .npz file: one entry per weight, named "<layer>/<weight>"."""
        self._require_built("save")
        arrays = {f"{layer}/{weight}": value for layer, p in self.params.items() for weight, value in p.items()}
        arrays["__input_shape__"] = np.asarray(self.input_shape, dtype=np.int64)
        with open(os.fspath(path), "wb") as f:
            np.savez(f, **arrays)

    def load(self, path) -> "Sequential":
        """Read parameters saved by ``save``. The file must hold exactly this model's weights with the same
        shapes; anything else raises ValueError listing the differences."""
        path = os.fspath(path)
        try:
            with np.load(path) as f:
                saved = {name: f[name] for name in f.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable .npz parameter file ({e})") from None
        input_shape = saved.pop("__input_shape__", None)
        if self.params is None:
            if input_shape is None:
                raise ValueError(f"{path}: the file does not record the input shape; call model.build(input_shape) "
                                 f"before load")
            self.build(tuple(int(d) for d in input_shape))
        expected = {f"{layer}/{weight}": value for layer, p in self.params.items() for weight, value in p.items()}
        problems = [f"missing {name} {list(expected[name].shape)}" for name in expected if name not in saved]
        problems += [f"unexpected {name} {list(saved[name].shape)}" for name in saved if name not in expected]
        problems += [f"{name}: the file has shape {list(saved[name].shape)}, the model {list(expected[name].shape)}"
                     for name in expected if name in saved and saved[name].shape != expected[name].shape]
        if problems:
            raise ValueError(f"{path} does not match this model:\n  " + "\n  ".join(problems))
        params = {}
        for name, value in saved.items():
            layer, weight = name.split("/", 1)
            params.setdefault(layer, {})[weight] = value.astype(expected[name].dtype)
        self.params = {layer: params[layer] for layer in self.params}  # keep the model's order
        if self.optimizer is not None:
            self.opt_state = self.optimizer.init(self.params)
        return self

    def __repr__(self) -> str:
        return "Sequential([\n" + "".join(f"    {layer!r},\n" for layer in self.layers) + "])"
