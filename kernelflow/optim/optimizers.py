"""SGD, Adagrad, RMSprop, Adam and AdamW with torch.optim's defaults and update rules (torch 2.x,
``maximize=False``, non-``capturable``). Each ``update_leaf`` mirrors the single-tensor code path of the
torch.optim class of the same name, line for line, so the two produce the same sequence of parameters."""
from __future__ import annotations

import numpy as np

from .base import Optimizer, check_hyper


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum, dampening and L2 weight decay."""

    SLOTS = ("momentum_buffer",)

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        check_hyper("learning rate", lr)
        check_hyper("momentum", momentum)
        check_hyper("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.SLOTS = ("momentum_buffer",) if momentum != 0 else ()

    def update_leaf(self, grad, param, slots, step):
        d_p = grad + self.weight_decay * param if self.weight_decay != 0 else grad
        if self.momentum != 0:
            # torch starts the buffer as a copy of the first d_p (no dampening on step 1); the buffer starts
            # at zero here, so scaling d_p by 1 instead of (1 - dampening) on step 1 gives the same value.
            first = (step == 1).astype(d_p.dtype) if self.dampening != 0 else 0.0
            buf = self.momentum * slots["momentum_buffer"] + (1 - self.dampening + self.dampening * first) * d_p
            slots = {"momentum_buffer": buf}
            d_p = d_p + self.momentum * buf if self.nesterov else buf
        return param - self.lr * d_p, slots


class Adagrad(Optimizer):
    SLOTS = ("sum",)

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        check_hyper("learning rate", lr)
        check_hyper("lr_decay", lr_decay)
        check_hyper("weight_decay", weight_decay)
        check_hyper("initial_accumulator_value", initial_accumulator_value)
        check_hyper("epsilon", eps)
        self.lr, self.lr_decay, self.weight_decay = lr, lr_decay, weight_decay
        self.initial_accumulator_value, self.eps = initial_accumulator_value, eps

    def init_slot(self, name, param):
        return np.full_like(param, self.initial_accumulator_value)

    def update_leaf(self, grad, param, slots, step):
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * param
        clr = self.lr / (1 + (step - 1) * self.lr_decay) if self.lr_decay != 0 else self.lr
        state_sum = slots["sum"] + grad * grad
        std = np.sqrt(state_sum) + self.eps
        return param - clr * (grad / std), {"sum": state_sum}


class RMSprop(Optimizer):
    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False):
        check_hyper("learning rate", lr)
        check_hyper("alpha", alpha)
        check_hyper("epsilon", eps)
        check_hyper("momentum", momentum)
        check_hyper("weight_decay", weight_decay)
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.momentum, self.centered = momentum, centered
        self.SLOTS = ("square_avg",) + (("momentum_buffer",) if momentum > 0 else ()) + \
                     (("grad_avg",) if centered else ())

    def update_leaf(self, grad, param, slots, step):
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * param
        new = {"square_avg": self.alpha * slots["square_avg"] + (1 - self.alpha) * (grad * grad)}
        if self.centered:
            new["grad_avg"] = slots["grad_avg"] + (1 - self.alpha) * (grad - slots["grad_avg"])
            avg = np.sqrt(new["square_avg"] - new["grad_avg"] * new["grad_avg"]) + self.eps
        else:
            avg = np.sqrt(new["square_avg"]) + self.eps
        if self.momentum > 0:
            new["momentum_buffer"] = self.momentum * slots["momentum_buffer"] + grad / avg
            return param - self.lr * new["momentum_buffer"], new
        return param - self.lr * (grad / avg), new


RMSProp = RMSprop  # the spelling of the issue; torch's is RMSprop


class Adam(Optimizer):
    """Adam (Kingma & Ba); ``weight_decay`` is L2 added to the gradient, as in torch.optim.Adam."""

    decoupled_weight_decay = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        check_hyper("learning rate", lr)
        check_hyper("epsilon", eps)
        check_hyper("beta parameter at index 0", betas[0], 0.0, 1.0)
        check_hyper("beta parameter at index 1", betas[1], 0.0, 1.0)
        check_hyper("weight_decay", weight_decay)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.weight_decay, self.amsgrad = weight_decay, amsgrad
        self.SLOTS = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())

    def update_leaf(self, grad, param, slots, step):
        beta1, beta2 = self.betas
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:
                param = param * (1 - self.lr * self.weight_decay)
            else:
                grad = grad + self.weight_decay * param
        exp_avg = slots["exp_avg"] + (1 - beta1) * (grad - slots["exp_avg"])  # torch's lerp
        exp_avg_sq = beta2 * slots["exp_avg_sq"] + (1 - beta2) * (grad * grad)
        new = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = np.sqrt(1 - beta2 ** step)
        if self.amsgrad:
            new["max_exp_avg_sq"] = np.maximum(slots["max_exp_avg_sq"], exp_avg_sq)
            denom = np.sqrt(new["max_exp_avg_sq"]) / bias_correction2_sqrt + self.eps
        else:
            denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + self.eps
        return param - (self.lr / bias_correction1) * (exp_avg / denom), new


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``param *= 1 - lr * weight_decay`` first."""

    decoupled_weight_decay = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)
