"""Optimizers as pure functions over pytrees (torch.optim's defaults and update rules).

    opt = kf.optim.Adam(1e-3)
    state = opt.init(params)
    params, state = opt.update(grads, state, params)   # traceable: call it inside kf.jit
"""
from .base import Optimizer
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop, RMSProp

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "RMSProp", "Adam", "AdamW"]
