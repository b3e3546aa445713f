"""Training step of Glow (K=16, L=2, hidden 256, batch 64) with the coupling networks' actnorms
folded into their convolutions (bijections/glow_coupling_net.py, the default) against the unfolded network of
the paper, the two interleaved in one process (benchmarks/README.md). Same function, float
rounding aside; prints seconds per step and the speed-up.

    PYTHONPATH=src python benchmarks/actnorm_folding.py            # float32, NCHW, eager
    PYTHONPATH=src python benchmarks/actnorm_folding.py compile    # channels-last + torch.compile
"""

import copy
import sys

import torch

from flowforge.bench.measure import Ratio, interleaved_seconds
from flowforge.bijections.glow_coupling_net import GlowCouplingNet
from flowforge.models.glow import Glow
from flowforge.training.speed import SpeedOptions, apply_speed_options


class Unfolded(GlowCouplingNet):
    _layers = GlowCouplingNet._layers_unfolded


def main(rounds: int = 15) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    folded = Glow((1, 28, 28), levels=2, depth=16, hidden=256)
    folded.initialize(images)
    unfolded = copy.deepcopy(folded)
    for m in unfolded.modules():
        if type(m) is GlowCouplingNet:
            m.__class__ = Unfolded
    opts = SpeedOptions(channels_last=True, compile=True) if "compile" in sys.argv else SpeedOptions()
    work = {}
    for name, model in (("unfolded", unfolded), ("folded", folded)):
        apply_speed_options(model, opts)
        opt = torch.optim.Adamax(model.parameters(), 1e-3)

        def step(model=model, opt=opt):
            loss = model.loss(images, generator=torch.Generator().manual_seed(0))["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        work[name] = step
    times = interleaved_seconds(work, rounds=rounds, device=torch.device("cpu"), warmup=2)
    for name, t in times.items():
        print(f"{name}: median {sorted(t)[len(t) // 2]:.3f} s/step over {rounds} rounds")
    print(f"{opts.label()}: folded speed-up (unfolded time / folded time) {Ratio.of(times['unfolded'], times['folded'])}")


if __name__ == "__main__":
    main()
