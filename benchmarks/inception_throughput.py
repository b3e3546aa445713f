"""What an Inception FID costs on this machine: the FID Inception v3 (evaluation/inception.py) feature
throughput on `--batch` grey 28 x 28 uint8 images (resized to 299 x 299 inside, as pytorch-fid does)
in one `features` call after a 2-image warm-up, and the time of one Fréchet distance between
2048-d feature sets (two 2048 x 2048 float64 eigen-decompositions). The network keeps PyTorch's
default initialisation: the cost does not depend on the weights' values.

    PYTHONPATH=src python benchmarks/inception_throughput.py [--batch 100] [--device cpu] [--n 10000]
"""

from __future__ import annotations

import argparse
import time

import torch

from flowforge.evaluation.fid import fid_from_features
from flowforge.evaluation.inception import FIDInceptionV3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100, help="images in the timed call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=10000, help="images per set in the extrapolated FID cost")
    args = parser.parse_args()
    model = FIDInceptionV3(max_batch=args.batch).to(args.device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch, 1, 28, 28), dtype=torch.uint8, generator=gen)
    model.features(images[:2])
    sync = torch.cuda.synchronize if str(args.device).startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    features = model.features(images)
    sync()
    seconds = time.perf_counter() - start
    rate = args.batch / seconds
    start = time.perf_counter()
    fid_from_features(features.cpu(), features.cpu().flip(0))
    frechet = time.perf_counter() - start
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads: "
          f"{args.batch} images in {seconds:.1f} s = {rate:.1f} images/s; one 2048-d Fréchet distance {frechet:.1f} s; "
          f"FID of {args.n} samples vs {args.n} test images: about {(2 * args.n / rate + frechet) / 60:.0f} min")


if __name__ == "__main__":
    main()
