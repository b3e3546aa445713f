"""Assembled models. Importing this package registers them; build one with `create(name, **kw)`."""

from flowforge.models.base import FlowModel, ImageFlowModel
from flowforge.models.flat import FlatFlowModel
from flowforge.models.flat_realnvp import FlatRealNVP
from flowforge.models.glow import Glow
from flowforge.models.maf import MAF
from flowforge.models.realnvp import RealNVP
from flowforge.models.registry import available, create, register
from flowforge.models.vae_flow import VAEFlow

__all__ = ["FlatFlowModel", "FlatRealNVP", "FlowModel", "Glow", "ImageFlowModel", "MAF", "RealNVP", "VAEFlow", "available",
           "create", "register"]
