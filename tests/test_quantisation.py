import torch

from flowforge.data import quantisation
from flowforge.data.quantisation import dequantise, to_model_space


def test_dequantised_values_never_reach_the_next_cell(monkeypatch):
    """The largest float32 below 1 as noise rounds x + noise / 2^n onto the next cell's edge
    unless dequantise guards against it."""
    largest_below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()
    monkeypatch.setattr(quantisation.torch, "rand",
                        lambda shape, **kw: torch.full(shape, largest_below_one, dtype=kw.get("dtype")))
    for n_bits in (8, 5):
        x = to_model_space(torch.arange(256, dtype=torch.uint8), n_bits)
        d = dequantise(x, n_bits)
        assert (d >= x).all() and (d < x + 1.0 / 2**n_bits).all()
