"""A plain multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


class MLP(nn.Module):
    """in -> hidden[0] -> ... -> hidden[-1] -> out, `activation` between layers; the output layer
    starts at zero when `zero_output` (so a coupling built on it starts as the identity)."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int], activation: str = "tanh",
                 zero_output: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        self.output = nn.Linear(width, out_features)
        if zero_output:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.body(x))
