"""Networks used inside layers (conditioners, Lipschitz-constrained nets, zero-initialised outputs)."""

from flowforge.nets.edge_bias import EdgeBias
from flowforge.nets.lipschitz import LipSwish, SpectralNormConv2d, SpectralNormLinear, lipschitz_conv_net, lipschitz_mlp
from flowforge.nets.made import MADE, MaskedLinear
from flowforge.nets.mlp import MLP
from flowforge.nets.resnet import ResNet
from flowforge.nets.zero_init import LinearZeros, ZeroConv2d

__all__ = ["EdgeBias", "LinearZeros", "LipSwish", "MADE", "MLP", "MaskedLinear", "ResNet", "SpectralNormConv2d",
           "SpectralNormLinear", "ZeroConv2d", "lipschitz_conv_net", "lipschitz_mlp"]
