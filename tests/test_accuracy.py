"""Accuracy on real data (the 8x8 digits shipped with kernelflow), with the default compiled backend:
the course's models must actually learn, not merely run."""
import importlib.util
import os
import sys

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name: str):
    module_name = f"kernelflow_example_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, os.path.join(EXAMPLES, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def test_logistic_regression_on_digits():
    result = load_example("logistic_regression").main([])
    assert result["accuracy"] >= 0.93


def test_lenet5_on_digits():
    result = load_example("lenet5_fashion_mnist").main(
        ["--dataset", "digits", "--epochs", "25", "--batch-size", "32", "--save", "",
         "--verbose", "0"])
    assert result["dataset"] == "8x8 digits"
    assert result["accuracy"] >= 0.97
    # evaluate's accuracy is the fraction of argmax predictions equal to the labels
    import kernelflow as kf
    _, _, (x_test, y_test) = load_example("mlp_fashion_mnist").load_images("digits")
    predictions = np.argmax(result["model"].predict(x_test, batch_size=128), axis=-1)
    assert np.mean(predictions == y_test) == result["accuracy"]
    assert kf.data.load_digits()[1][0].shape == (359, 8, 8)
