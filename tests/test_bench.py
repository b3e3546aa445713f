"""`flowforge bench`: the peer model matches the architecture, the measurements are sound."""

from __future__ import annotations

import json

import pytest
import torch

from flowforge.bench.measure import Ratio, counted_flops, interleaved_seconds
from flowforge.bench.suite import BenchSettings, flowforge_contender, markdown_table, normflows_contender
from flowforge.models.glow import Glow

normflows = pytest.importorskip("normflows")
from flowforge.bench.peer_normflows import build_normflows_glow  # noqa: E402

SMALL = dict(image_shape=(1, 16, 16), levels=2, depth=2, hidden=16)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_peer_has_the_same_architecture():
    ours = Glow(SMALL["image_shape"], levels=2, depth=2, hidden=16)
    peer = build_normflows_glow(SMALL["image_shape"], 2, 2, 16)
    # conv weights of the coupling networks dominate; the documented differences are the
    # split prior's conditioning conv (ours) vs per-position Gaussians (normflows), and the
    # output gain / bias / actnorm parameter shapes
    assert abs(_count(ours) - _count(peer)) < 0.05 * _count(ours)
    ours_convs = [tuple(m.weight.shape) for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    peer_convs = sorted(tuple(m.weight.shape) for m in peer.modules() if isinstance(m, torch.nn.Conv2d))
    for shape in set(peer_convs):  # the coupling networks' convolutions, layer for layer
        assert ours_convs.count(shape) >= peer_convs.count(shape), shape


def test_both_contenders_train_and_count_nearly_the_same_flops():
    s = BenchSettings(**SMALL, batch_sizes=(8,))
    init = torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8)
    images = init[:8]
    ours, peer = flowforge_contender(s, "baseline", init), normflows_contender(s, init)
    gen = torch.Generator().manual_seed(0)
    f_ours = counted_flops(lambda: ours.train_step(images, gen))
    f_peer = counted_flops(lambda: peer.train_step(images, gen))
    assert f_ours > 0 and abs(f_ours - f_peer) < 0.1 * f_peer
    # both losses are bits/dim of the same data: same scale at initialisation
    assert abs(ours.train_step(images, gen).item() - peer.train_step(images, gen).item()) < 0.5


def test_interleaved_timing_and_ratio():
    calls = []
    times = interleaved_seconds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=4,
                                device=torch.device("cpu"), warmup=1)
    assert [len(v) for v in times.values()] == [4, 4]
    assert calls[2:6] == ["a", "b", "b", "a"]  # order rotates between rounds
    r = Ratio.of([2.0, 4.0, 3.0], [1.0, 1.0, 1.0])
    assert (r.median, r.low, r.high, r.rounds) == (3.0, 2.0, 4.0, 3)


def test_markdown_table_shows_missing_values():
    text = markdown_table([{"a": 1.5, "b": None}, {"a": 12345.0, "c": "x"}])
    assert text.splitlines()[0] == "| a | b | c |" and "12,345" in text and "—" in text


def test_cli_bench_writes_table_and_json(tmp_path, capsys):
    from flowforge.cli import main

    out = tmp_path / "bench"
    assert main(["bench", "train-throughput", "--device", "cpu", "--no-progress", "--dataset", "mnist",
                 "--depth", "1", "--hidden", "8", "--batch-sizes", "4", "--rounds", "3",
                 "--variants", "baseline,sync-free", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["contender"] for r in rows] == ["normflows", "flowforge baseline", "flowforge sync-free"]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert rows[1]["ratio_vs_normflows"]["rounds"] == 3
    assert "ratio_vs_normflows" in out.with_suffix(".md").read_text()


def test_variants_compose_switches_and_unknown_ones_are_named(capsys):
    from flowforge.bench.suite import variant_options, variant_switches
    from flowforge.cli import main
    from flowforge.training.speed import SpeedOptions

    assert variant_options("baseline") == SpeedOptions()
    assert variant_options("all") == SpeedOptions(channels_last=True, coupling_dtype="bfloat16", compile=True)
    assert variant_options("channels-last+compile-flow") == SpeedOptions(channels_last=True, compile_flow=True)
    assert variant_options("bf16+cuda-graphs") == SpeedOptions(coupling_dtype="bfloat16", cuda_graphs=True)
    assert variant_switches("all+sync-free")[-1] == "sync-free"
    assert main(["bench", "train-throughput", "--variants", "baseline,channels-last+turbo"]) == 2
    assert "unknown switch(es) ['turbo']" in capsys.readouterr().err
