"""Two gloo processes on the CPU train exactly as one process on the same global batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import needs_mnist
from flowforge.models.glow import Glow
from flowforge.training.distributed import DistInfo, distributed_step, initialize_sharded, sharded_input, wrap

GLOBAL_BATCH = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        info = DistInfo(rank, world, rank)
        torch.manual_seed(0)
        model = Glow((1, 8, 8), levels=2, depth=2, hidden=8, seed=0)
        data = torch.randint(0, 256, (GLOBAL_BATCH, 1, 8, 8), generator=torch.Generator().manual_seed(1),
                             dtype=torch.uint8)
        initialize_sharded(model, data, torch.Generator().manual_seed(2), info)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        ddp = wrap(model, torch.device("cpu"))
        opt = torch.optim.Adamax(ddp.parameters(), lr=1e-2)
        losses = []
        for step in range(3):
            x = sharded_input(model, data, torch.Generator().manual_seed(10 + step), info)
            losses.append(float(distributed_step(ddp, opt, x, grad_clip=50.0)))
        torch.save({"init": init, "losses": losses, "final": model.state_dict()}, f"{out_dir}/w{world}-r{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run(world: int, out_dir: str) -> list[dict]:
    mp.spawn(_worker, args=(world, _free_port(), out_dir), nprocs=world, join=True)
    return [torch.load(f"{out_dir}/w{world}-r{r}.pt") for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dist"))
    return _run(1, out)[0], _run(2, out)


def test_actnorm_init_is_identical_on_every_rank_and_equals_one_process(runs):
    single, (r0, r1) = runs
    for k, v in r0["init"].items():
        assert torch.equal(v, r1["init"][k]), k  # bit-identical across ranks
        torch.testing.assert_close(v, single["init"][k], rtol=1e-5, atol=1e-5)
    # the init really is data dependent (not the zero default)
    scales = [v for k, v in r0["init"].items() if k.endswith("log_scale")]
    assert all(s.abs().sum() > 0 for s in scales)


def test_two_processes_give_the_one_process_loss_and_weights(runs):
    single, (r0, r1) = runs
    assert r0["losses"] == r1["losses"]  # all-reduced: the same number on both ranks
    for a, b in zip(single["losses"], r0["losses"]):
        assert abs(a - b) < 1e-5
    for k, v in single["final"].items():
        torch.testing.assert_close(r0["final"][k], v, rtol=1e-5, atol=1e-5)
        assert torch.equal(r0["final"][k], r1["final"][k]), k
    assert single["losses"][2] != single["losses"][0]  # the updates moved the model


TIMED = ["train.max_steps=1000000", "train.max_minutes=0.03", "train.batch_size=8", "train.init_batch=16",
         "train.valid_examples=50", "train.eval_every=1000000", "train.checkpoint_every=1000000",
         "train.sample_every=1000000", "train.log_every=5", "train.lr_schedule=\"cosine\""]


def _timed_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from conftest import CONFIGS
    from flowforge.runs.config import load_config
    from flowforge.runs.distributed_trainer import DistributedTrainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = load_config(CONFIGS / "tiny-mnist.toml", TIMED)
        trainer = DistributedTrainer(cfg, f"{out_dir}/run", progress=False, info=DistInfo(rank, world, rank),
                                     device=torch.device("cpu"))
        trainer.fit()
        lr = trainer.optimizer.param_groups[0]["lr"]
        torch.save({"step": trainer.state.step, "elapsed": trainer.state.elapsed_seconds, "lr": lr},
                   f"{out_dir}/timed-r{rank}.pt")
    finally:
        dist.destroy_process_group()


@needs_mnist
def test_ranks_stop_a_time_budget_at_the_same_step_with_the_same_rate(tmp_path):
    """Each rank timing itself could start a step another rank skips (a hang in the all-reduce)
    and give a budgeted cosine different rates: every rank counts rank 0's clock."""
    mp.spawn(_timed_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"timed-r{r}.pt") for r in range(2))
    assert r0["step"] > 1 and r0 == r1  # bit-identical clocks, steps and rates
    assert r0["elapsed"] >= 0.03 * 60
