"""Assembled models. Importing this package registers them; build one with `create(name, **kw)`."""

from flowforge.models.base import FlowModel
from flowforge.models.glow import Glow
from flowforge.models.registry import available, create, register

__all__ = ["FlowModel", "Glow", "available", "create", "register"]
