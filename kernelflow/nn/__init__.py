"""kf.nn: layers with a functional core (``init(key, input_shape)``, ``apply(params, x, key=...)``) under a
Keras-like ``Sequential`` with compile / fit / evaluate / predict / save / load.

Images are NCHW; sequences [batch, time, features]; parameters are plain dicts of numpy arrays.
"""
from . import initializers, losses
from .callbacks import Callback, EarlyStopping
from .conv import AvgPool2D, Conv2D, MaxPool2D
from .layer import Layer
from .layers import Dense, Dropout, Embedding, Flatten, LayerNorm, ReLU, Sigmoid, Softmax, Tanh
from .recurrent import GRU, LSTM, SimpleRNN
from .sequential import Sequential

__all__ = ["initializers", "losses", "Callback", "EarlyStopping", "AvgPool2D", "Conv2D", "MaxPool2D", "Layer",
           "Dense", "Dropout", "Embedding", "Flatten", "LayerNorm", "ReLU", "Sigmoid", "Softmax", "Tanh", "GRU",
           "LSTM", "SimpleRNN", "Sequential"]
