"""Feature networks for FID.

The standard FID (Heusel et al. 2017) uses the 2048 pool-3 features of the TF Inception v3 graph;
`inception_extractor` gives them with pytorch-fid's weights file (`pt_inception-2015-12-05-6726825d.pth`,
at a path the user supplies: the argument, or `$FLOWFORGE_INCEPTION_WEIGHTS` where the command line
looks for it), through the plain-PyTorch port in evaluation/inception.py, checked against
pytorch-fid's module code on synthetic weights (tests/test_inception.py). Its `description` names
the file. On a 2-core CPU it is slow (see docs/vae-flow.md).

Without that file the project trains its own feature network on the data set
(`flowforge fid-features train --dataset fashion-mnist`): a small CNN classifier whose penultimate
layer (128 ReLU units) gives the features; its test accuracy is saved with it and every FID names
the extractor and that accuracy. Such FIDs are comparable only with each other, not with Inception
FIDs in papers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from flowforge.data.images import load_image_split
from flowforge.data.quantisation import to_model_space
from flowforge.errors import CheckpointError
from flowforge.evaluation.inception import FIDInceptionV3, load_fid_inception
from flowforge.progress import progress_bar

WEIGHTS, META = "features.safetensors", "features.json"


class FeatureClassifier(nn.Module):
    """conv(32) -> pool -> conv(64) -> pool -> dense 128 (the features) -> dense num_classes."""

    def __init__(self, in_channels: int = 1, size: int = 28, num_classes: int = 10, features: int = 128):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.hidden = nn.Linear(64 * (size // 4) ** 2, features)
        self.out = nn.Linear(features, num_classes)
        self.description = "untrained feature classifier"

    def _hidden(self, x: Tensor) -> Tensor:
        return F.relu(self.hidden(self.conv(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self._hidden(x))

    def features(self, images: Tensor) -> Tensor:
        """Penultimate-layer features of uint8 images."""
        return self._hidden(to_model_space(images))


INCEPTION_WEIGHTS_ENV = "FLOWFORGE_INCEPTION_WEIGHTS"


def inception_weights_path(explicit: str | Path | None = None) -> str | None:
    """`explicit` if given, else $FLOWFORGE_INCEPTION_WEIGHTS if set and non-empty, else None."""
    return str(explicit) if explicit else os.environ.get(INCEPTION_WEIGHTS_ENV) or None


def inception_extractor(weights_path: str | Path, device: torch.device | str = "cpu") -> FIDInceptionV3:
    """The FID Inception v3 (pool 3, 2048 features) with pytorch-fid's weights file at `weights_path`,
    in eval mode; CheckpointError if the file is missing, unreadable or not those weights."""
    return load_fid_inception(weights_path, device)


@torch.no_grad()
def accuracy(model: FeatureClassifier, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    hits = 0
    for start in range(0, len(images), batch_size):
        logits = model(to_model_space(images[start:start + batch_size]))
        hits += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    return hits / len(images)


def train_feature_network(dataset: str, out_dir: str | Path, epochs: int = 2, batch_size: int = 128,
                          lr: float = 1e-3, seed: int = 0, data_dir: str | None = None, progress: bool = True) -> dict:
    """Train the classifier on the whole official training set of `dataset`, report its accuracy
    on the official test set, and save weights and metadata in `out_dir`."""
    torch.manual_seed(seed)
    train = load_image_split(dataset, "train", data_dir=data_dir, n_valid=0, seed=seed)  # all 60k
    test = load_image_split(dataset, "test", data_dir=data_dir)
    c, h, _ = train.images.shape[1:]
    model = FeatureClassifier(c, h, int(train.labels.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start_time = time.perf_counter()
    steps = 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        for start in progress_bar(range(0, len(perm) - batch_size + 1, batch_size), desc=f"epoch {epoch + 1}/{epochs}",
                          disable=not progress, leave=False):
            idx = perm[start:start + batch_size]
            loss = F.cross_entropy(model(to_model_space(train.images[idx])), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    seconds = time.perf_counter() - start_time
    meta = {"dataset": dataset, "test_accuracy": accuracy(model, test.images, test.labels), "epochs": epochs,
            "steps": steps, "train_seconds": seconds, "features": model.hidden.out_features,
            "architecture": "conv32-pool-conv64-pool-dense128 classifier (flowforge FeatureClassifier)"}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))
    (out / META).write_text(json.dumps(meta, indent=2))
    return meta


def load_feature_network(path: str | Path, device: torch.device | str = "cpu") -> FeatureClassifier:
    """The trained feature network in `path` (from train_feature_network), in eval mode, with a
    `description` naming it and its test accuracy."""
    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / META).is_file():
        raise CheckpointError(f"{path}: no feature network ({WEIGHTS} and {META}); "
                              "train one with flowforge fid-features train")
    meta = json.loads((path / META).read_text())
    state = load_file(str(path / WEIGHTS))
    conv_in = state["conv.0.weight"]
    side = int(round((state["hidden.weight"].shape[1] // 64) ** 0.5)) * 4
    model = FeatureClassifier(conv_in.shape[1], side, state["out.weight"].shape[0], state["hidden.weight"].shape[0])
    model.load_state_dict(state)
    model.description = (f"flowforge feature classifier trained on {meta['dataset']} "
                         f"(test accuracy {100 * meta['test_accuracy']:.2f}%, {meta['features']} features)")
    return model.to(device).eval()
