"""Where a sampling pass blows up: the inverse of every bijection, layer by layer, on latents drawn
at a temperature, recording the largest |output|, how many samples turned non-finite there, and
for affine couplings the smallest scale the inverse divides by (x_b = z_b / scale - shift) and for
actnorms their scales.

Behrmann et al. 2021 ("Understanding and mitigating exploding inverses in invertible neural
networks", sections 3-5): an affine coupling's inverse has Lipschitz constant up to
1 / min(scale), so a scale function whose range reaches 0 (Glow's sigmoid(h + 2)) lets samples
off the training data's latents divide by tiny numbers, compounding over the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from flowforge.bijections.actnorm import ActNorm
from flowforge.bijections.coupling import AffineCoupling


@dataclass
class LayerTrace:
    name: str
    kind: str
    max_abs: float  # largest finite |output|
    non_finite: int  # samples with any NaN / inf in the output
    min_scale: float = float("nan")  # affine coupling: smallest scale divided by; actnorm: smallest scale
    extra: dict = field(default_factory=dict)


def _actnorm_scale(layer: ActNorm) -> Tensor | None:
    for name in ("logs", "log_scale"):
        t = getattr(layer, name, None)
        if isinstance(t, Tensor):
            return t.detach().float().exp()
    return None


@torch.no_grad()
def trace_sampling(model: nn.Module, n: int, temperature: float, seed: int = 0) -> list[LayerTrace]:
    """Sample `n` images at `temperature` (eager, float32) recording every leaf bijection's inverse,
    in the order the sampling pass runs them."""
    model.eval()
    traces: list[LayerTrace] = []
    originals = []
    for name, module in model.named_modules():
        if not hasattr(module, "inverse") or any(True for _ in module.children()) and not isinstance(
                module, AffineCoupling):
            continue
        original = module.inverse

        def wrapped(z, *args, _orig=original, _name=name, _module=module, **kwargs):
            out = _orig(z, *args, **kwargs)
            x = out[0] if isinstance(out, tuple) else out
            flat = x.detach().flatten(1).float()
            bad = int((~torch.isfinite(flat)).any(1).sum())
            finite = flat[torch.isfinite(flat)]
            t = LayerTrace(_name, type(_module).__name__, float(finite.abs().max()) if finite.numel() else float("nan"), bad)
            if isinstance(_module, AffineCoupling):
                z_a, _ = _module._halves(z)
                _, scale, _ = _module._shift_scale(z_a, kwargs.get("context"), z.dtype)
                s = scale.detach().float()
                s = s[torch.isfinite(s)]
                t.min_scale = float(s.min()) if s.numel() else float("nan")
                t.extra["frac_scale_below_0.05"] = float((s < 0.05).float().mean()) if s.numel() else float("nan")
            elif isinstance(_module, ActNorm):
                sc = _actnorm_scale(_module)
                if sc is not None:
                    t.min_scale = float(sc.min())
                    t.extra["max_scale"] = float(sc.max())
            traces.append(t)
            return out

        module.inverse = wrapped
        originals.append(module)
    try:
        gen = torch.Generator().manual_seed(seed)
        model.sample(n, temperature, generator=gen)
    finally:
        for module in originals:
            del module.inverse  # back to the class's method
    return traces


def summarise(traces: list[LayerTrace]) -> dict:
    """The first layer with non-finite samples, the smallest coupling scale, and the final count."""
    first_bad = next((t for t in traces if t.non_finite), None)
    couplings = [t for t in traces if t.kind == "AffineCoupling"]
    actnorms = [t for t in traces if t.kind == "ActNorm"]
    return {
        "non_finite_samples": traces[-1].non_finite if traces else 0,
        "first_non_finite_layer": first_bad.name if first_bad else None,
        "min_coupling_scale": min((t.min_scale for t in couplings), default=float("nan")),
        "min_actnorm_scale": min((t.min_scale for t in actnorms), default=float("nan")),
        "max_actnorm_scale": max((t.extra.get("max_scale", float("nan")) for t in actnorms), default=float("nan")),
        "max_abs_before_first_bad": max((t.max_abs for t in traces[: traces.index(first_bad)]), default=float("nan"))
        if first_bad else max((t.max_abs for t in traces), default=float("nan")),
    }
