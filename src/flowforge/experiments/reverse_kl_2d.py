"""`flowforge reproduce reverse-kl-2d`: variational inference with normalising flows on the 2-D
energies of Rezende & Mohamed 2015 (section 6.1, table 1, figure 3): each flow is fitted by
reverse KL (objectives/reverse_kl.py) with the paper's annealed target beta_t log p~, and for
each energy one figure shows the flow's samples, the true density exp(-U) and the flow's density
on [-4, 4]^2.

The table gives, per energy and flow, the ELBO E_q[log p~ - log q] (the negated loss at beta = 1,
on 20,000 fresh draws), log Z by quadrature of exp(-U) over the plotting box (a 400 x 400 grid),
and their difference, KL(q || p_box) + the mass of q outside the box -- the reverse KL to the
target restricted to the box when q puts its mass inside it (0 for a perfect fit).
Optimiser: Adam (not the paper's RMSprop with 500,000 updates): a CPU-sized run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from flowforge.models import create
from flowforge.objectives.energies import BOX, box_log_z, energy_log_density
from flowforge.objectives.reverse_kl import annealed_beta, reverse_kl_loss

BOUNDS = BOX
DEFAULT_STEPS = 2000
FLOWS = {
    "planar-32": ("planar", {"layers": 32}),
    "nsf-4": ("nsf", {"layers": 4, "hidden": [64, 64], "bins": 8, "bound": 4.0}),
}


def fit(name: str, energy: str, steps: int, draws: int = 256, lr: float = 5e-3, anneal_steps: int | None = None,
        seed: int = 0):
    """Fit flow `name` of FLOWS to `energy` by `steps` Adam steps on the reverse KL; returns (flow, losses)."""
    kind, options = FLOWS[name]
    torch.manual_seed(seed)
    flow = create(kind, dim=2, **options)
    log_density = energy_log_density(energy)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    anneal = anneal_steps if anneal_steps is not None else steps // 2
    gen = torch.Generator().manual_seed(seed + 1)
    losses = []
    for step in range(steps):
        beta = annealed_beta(step, steps=anneal) if anneal > 0 else 1.0
        loss = reverse_kl_loss(flow, log_density, draws, beta=beta, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return flow.eval(), losses


def reproduce(out_dir: str | Path, energies: tuple[str, ...] = ("u1", "u2"), flows: tuple[str, ...] = tuple(FLOWS),
              steps: int | None = None, **_) -> str:
    """Fit every flow to every energy (`steps` Adam steps each, default 2000); write
    OUT/reverse-kl-ENERGY.png and OUT/results.md / results.json."""
    from flowforge.viz.density2d import log_density_grid, save_density_figure

    steps = steps or DEFAULT_STEPS
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ["| energy | flow | ELBO (nats) | log Z on the box | gap = KL to the boxed target | fit time (s) |",
            "|---|---|---|---|---|---|"]
    results = []
    for energy in energies:
        log_z = box_log_z(energy)
        log_density = energy_log_density(energy)
        panels, samples = [], None
        with torch.no_grad():
            panels.append(("exp(-U) (target)", *log_density_grid(log_density, bounds=BOUNDS)))
        for name in flows:
            start = time.perf_counter()
            flow, losses = fit(name, energy, steps)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                elbo = -float(reverse_kl_loss(flow, log_density, 20000, generator=torch.Generator().manual_seed(7)))
                panels.append((f"{name}: q", *log_density_grid(flow.log_prob, bounds=BOUNDS)))
                if samples is None:
                    samples = flow.sample(2000, generator=torch.Generator().manual_seed(8))
            results.append({"energy": energy, "flow": name, "elbo": elbo, "box_log_z": log_z, "gap": log_z - elbo,
                            "steps": steps, "seconds": seconds, "final_losses": losses[-10:]})
            rows.append(f"| {energy} | {name} | {elbo:.3f} | {log_z:.3f} | {log_z - elbo:.3f} | {seconds:.0f} |")
        save_density_figure(out_dir / f"reverse-kl-{energy}.png", samples, panels, bounds=BOUNDS)
    table = "\n".join(rows)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(
        f"Reverse-KL fits, {steps} Adam steps of 256 draws each; samples panel: {flows[0]}.\n\n" + table + "\n")
    return table
