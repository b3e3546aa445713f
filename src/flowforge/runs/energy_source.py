"""An energy "data set" (data.dataset = "energy-u1" ... "energy-u4"): no examples, an unnormalised
2-D log-density log p~ = -U (Rezende & Mohamed 2015, section 6.1, table 1) that a flow is fitted
to by reverse KL (train.objective = "reverse-kl"; objectives/reverse_kl.py).

Its metric is the negative ELBO, E_q[log q(x) - log p~(x)] = KL(q || p) - log Z, in nats, on fresh
draws of the flow (lower is better). A split is a number of draws and a seed of its own (valid:
VALID_DRAWS or train.valid_examples, test: TEST_DRAWS), so `tensors` gives empty rows that only
count the draws and `flowforge eval --examples N` scores N draws. Each result also gives log Z on
the box [-4, 4]^2 by quadrature and the gap neg. ELBO + log Z_box: the reverse KL to the target
restricted to the box when q keeps its mass inside it (0 for a perfect fit)."""

from __future__ import annotations

from pathlib import Path

import torch

from flowforge.evaluation.summary import summarise
from flowforge.objectives.energies import BOX, box_log_z, energy_log_density
from flowforge.objectives.reverse_kl import annealed_beta, reverse_kl_terms
from flowforge.progress import progress_bar
from flowforge.runs.config import RunConfig
from flowforge.runs.point_samples import PointSamples

VALID_DRAWS, TEST_DRAWS = 4000, 20000
SPLIT_SEEDS = {"valid": 11, "test": 12}
DIAGNOSE_DRAWS = 64


class EnergySource(PointSamples):
    metric = "neg_elbo"
    higher_is_better = False
    num_classes = 0

    def __init__(self, cfg: RunConfig, data_dir: str | None = None):
        self.cfg, self.energy = cfg, cfg.data.dataset.removeprefix("energy-")
        self.log_density = energy_log_density(self.energy)
        self._log_z: float | None = None

    def model_args(self) -> dict:
        return {"dim": 2}

    def tensors(self, name: str, limit: int = 0) -> tuple[torch.Tensor, ...]:
        """Empty rows counting the split's draws (module docstring); no training examples."""
        if name == "train":
            return ()
        n = limit or (VALID_DRAWS if name == "valid" else TEST_DRAWS)
        return (torch.zeros(n, 0),)

    def beta(self, step: int) -> float:
        steps = self.cfg.train.kl_anneal_steps
        return annealed_beta(step, steps=steps) if steps else 1.0

    def loss(self, model, n: int, step: int, generator: torch.Generator) -> dict:
        """The training loss of one step: mean of log q - beta_t log p~ over n reparameterised draws."""
        _, log_q, log_p = reverse_kl_terms(model, self.log_density, n, generator=generator)
        beta = self.beta(step)
        return {"loss": (log_q - beta * log_p).mean(), "neg_elbo": (log_q - log_p).detach().mean()}

    @property
    def box_log_z(self) -> float:
        if self._log_z is None:
            self._log_z = box_log_z(self.energy)
        return self._log_z

    @torch.no_grad()
    def evaluate(self, model, tensors, what: str, batch_size: int, device, samples: int = 1, seed: int = 0,
                 progress: bool = False) -> dict:
        """Negative ELBO over len(tensors[0]) fresh draws (seeded by the split); non-finite draws are refused."""
        n = len(tensors[0])
        model.eval()
        split = "test" if " test split" in what else "valid"  # pipeline.py: "RUN test split[ (first N)]"
        gen = torch.Generator(device=device).manual_seed(SPLIT_SEEDS[split] * 1_000_003 + seed)
        values = []
        for start in progress_bar(range(0, n, batch_size), desc=what, disable=not progress, leave=False):
            _, log_q, log_p = reverse_kl_terms(model, self.log_density, min(batch_size, n - start), generator=gen)
            values.append((log_q - log_p).double().cpu())
        result = summarise(torch.cat(values), what, self.metric)
        result.update(box_log_z=self.box_log_z, box_kl_gap=result[self.metric] + self.box_log_z)
        return result

    @torch.no_grad()
    def write_samples(self, model, path: Path, temperature: float, generator: torch.Generator, n: int = 2000) -> Path:
        """The target exp(-U), the flow's density and its samples on the box, in one figure."""
        from flowforge.viz.density2d import log_density_grid, save_density_figure

        model.eval()
        device = next(model.parameters()).device
        panels = [("exp(-U) (target)", *log_density_grid(self.log_density, bounds=BOX)),
                  ("flow q", *log_density_grid(lambda p: model.log_prob(p.to(device)).cpu(), bounds=BOX))]
        points = model.sample(n or 2000, temperature, generator=generator).cpu()
        return save_density_figure(path.with_suffix(".png"), points.numpy(), panels, bounds=BOX)

    def data_state(self) -> dict:
        return {}

    def diagnose(self, model, tensors, batch_size: int, device) -> dict:
        """Stability numbers at the flow's own draws (there are no data points)."""
        from flowforge.diagnostics.during_training import training_diagnostics

        with torch.no_grad():
            x = model.sample(DIAGNOSE_DRAWS, generator=torch.Generator(device=device).manual_seed(SPLIT_SEEDS["valid"]))
        return training_diagnostics(model, x)
