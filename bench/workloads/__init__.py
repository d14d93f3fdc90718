"""The workloads W1..W8 of issue 5, in order."""
from .dispatch import W8
from .lenet import W6
from .lstm import W7
from .mlp import W5
from .pointwise import W1, W2
from .rows import W3, W4

ALL = (W1, W2, W3, W4, W5, W6, W7, W8)
BY_KEY = {w.key: w for w in ALL}
