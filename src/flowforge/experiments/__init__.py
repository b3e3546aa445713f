"""The paper experiments behind `flowforge reproduce NAME` (registry.py), one module each."""

from flowforge.experiments.registry import EXPERIMENTS, reproduce_function

__all__ = ["EXPERIMENTS", "reproduce_function"]
