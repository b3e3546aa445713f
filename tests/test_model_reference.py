"""Today's models give the numbers the code gave when `fixtures/model_reference.pt` was written
(before the models were rebuilt on `flowforge.Flow`): the stored weights load into today's
model, and log-probs, seeded samples and the seeded loss agree to float32 rounding."""

import pytest
import torch

from fixtures.make_model_reference import OUT, outputs
from flowforge.models import create
from tiny_models import TINY_MODELS

REFERENCE = torch.load(OUT, weights_only=True)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_model_matches_reference(name):
    ref = REFERENCE[name]
    model = create(name, **TINY_MODELS[name])
    model.load_state_dict(ref["state"])
    got = outputs(name, model.eval())
    for key in ("log_prob", "samples", "loss"):
        assert got[key].shape == ref[key].shape, key
        torch.testing.assert_close(got[key], ref[key], rtol=1e-5, atol=1e-5, msg=f"{name}: {key}")
