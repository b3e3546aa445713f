"""A checkpoint written before the models were built on `flowforge.Flow` (state-dict keys of the
earlier Glow: steps.L.layers.K..., split_priors.I..., top_prior...) still loads through the run
loader, and gives the reference log-probs."""

import torch
from safetensors.torch import save_file

from fixtures.make_model_reference import outputs
from flowforge.models import create
from flowforge.runs.checkpoint import _load_weights
from test_model_reference import REFERENCE
from tiny_models import TINY_MODELS


def test_an_old_glow_checkpoint_file_loads_with_its_old_keys(tmp_path):
    ref = REFERENCE["glow"]
    assert any(k.startswith("steps.") for k in ref["state"])  # the fixture holds the old key names
    file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref["state"].items()}, str(file))
    model = create("glow", **TINY_MODELS["glow"])
    _load_weights(model, file, "cpu")
    torch.testing.assert_close(outputs("glow", model.eval())["log_prob"], ref["log_prob"], rtol=1e-5, atol=1e-5)
