"""The subcommands of `flowforge`, one module each (or a pair that belongs together); each module
offers `add_parser(sub, common)`, which registers its subcommands with their `func`."""

from __future__ import annotations

from flowforge.commands import configs, data, evaluate, fid, reproduce, sample, stability, train

# in the order `flowforge --help` lists them
COMMAND_MODULES = (train, evaluate, sample, reproduce, stability, fid, data, configs)
