"""flowforge: flow-based generative models."""

__version__ = "0.1.0"
