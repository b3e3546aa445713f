"""Assembled models. Importing this package registers them; build one with `create(name, **kw)`."""

from flowforge.models.base import FlowModel, ImageFlowModel
from flowforge.models.flat import FlatFlowModel
from flowforge.models.flat_realnvp import FlatRealNVP
from flowforge.models.flat_resflow import FlatResFlow
from flowforge.models.glow import Glow
from flowforge.models.iaf import IAF
from flowforge.models.inn_classifier import INNClassifier
from flowforge.models.lgf import LGFMAF, LGFFlatRealNVP, LGFRealNVP
from flowforge.models.lgf_glow import LGFGlow
from flowforge.models.maf import MAF
from flowforge.models.nsf import NSF, NSFAutoregressive
from flowforge.models.planar import PlanarFlow
from flowforge.models.realnvp import RealNVP
from flowforge.models.registry import available, create, register
from flowforge.models.resflow import ResFlow
from flowforge.models.vae_flow import VAEFlow

__all__ = ["FlatFlowModel", "FlatRealNVP", "FlatResFlow", "FlowModel", "Glow", "IAF", "ImageFlowModel", "INNClassifier",
           "LGFFlatRealNVP", "LGFGlow", "LGFMAF", "LGFRealNVP", "MAF", "NSF", "NSFAutoregressive", "PlanarFlow",
           "RealNVP", "ResFlow", "VAEFlow", "available", "create", "register"]
