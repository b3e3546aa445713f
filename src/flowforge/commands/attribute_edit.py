"""`flowforge sample RUN --attribute NAME` on a CelebA run: Glow section 6.3's manipulation with
CelebA's real binary attributes. The direction is the mean latent of training images with the
attribute minus that of those without (the attributes of the training split, as the labels the
paper uses); test images without the attribute move along it with the alphas of --class-edit."""

from __future__ import annotations

from pathlib import Path

from flowforge.errors import ConfigError


def check_attribute(name: str, dataset: str) -> None:
    """ConfigError (one line, naming the valid attributes) unless `name` is a CelebA attribute and
    the run is a CelebA run."""
    from flowforge.data.celeba_lists import CELEBA_ATTRIBUTE_NAMES

    names = ", ".join(CELEBA_ATTRIBUTE_NAMES)
    if dataset != "celeba":
        raise ConfigError(f"--attribute {name}: attribute edits need a CelebA run (this run's data set is "
                          f"{dataset}); the CelebA attributes are {names}")
    if name not in CELEBA_ATTRIBUTE_NAMES:
        raise ConfigError(f"--attribute {name}: not a CelebA attribute; expected one of {names}")


def attribute_edit(model, source, name: str, samples_dir: Path, count: int) -> Path:
    """Write samples/attribute-NAME.png for a CelebA run's model (source: its ImageSource)."""
    from flowforge.data.celeba import load_celeba_attributes
    from flowforge.viz.image_figures import attribute_edit_figure

    train_has = load_celeba_attributes("train", data_dir=source.data_dir).column(name)
    test_has = load_celeba_attributes("test", data_dir=source.data_dir).column(name)
    try:
        return attribute_edit_figure(model, samples_dir / f"attribute-{name}.png", source.split("train"), train_has,
                                     source.split("test"), test_has, count)
    except ValueError as err:  # every training image has it, or none has
        raise ConfigError(f"--attribute {name}: {err}") from None


__all__ = ["attribute_edit", "check_attribute"]
