"""Registry of model constructors: `create("glow", **kwargs)`; duplicate names raise."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from flowforge.models.base import FlowModel

_REGISTRY: dict[str, Callable[..., FlowModel]] = {}


def register(name: str):
    """Class decorator adding a model under `name`."""

    def add(cls):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered (by {_REGISTRY[name].__name__})")
        _REGISTRY[name] = cls
        return cls

    return add


def create(name: str, **kwargs) -> FlowModel:
    """Build the registered model `name` with keyword arguments."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def model_class(name: str) -> Callable[..., FlowModel]:
    """The registered class of `name` (its DATA_ARGS say what it takes from the data)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def available() -> list[str]:
    """The names of every registered model, sorted."""
    return sorted(_REGISTRY)


def validate_options(name: str, options: dict | None = None) -> tuple[dict, dict]:
    """(configurable options with their defaults, allowed values of string options) of model
    `name`: its constructor's keyword arguments minus those that come from the data."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    cls = _REGISTRY[name]
    defaults = {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.default is not inspect.Parameter.empty and p.name not in cls.DATA_ARGS
    }
    return defaults, dict(cls.CHOICES)
