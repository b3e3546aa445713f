"""The application around the training loop: config files, run directories, checkpoints, resume,
report.md, data sources, and train-or-resume / evaluate / diagnose a run."""
