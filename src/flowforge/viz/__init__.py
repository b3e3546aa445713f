"""Visualisation: image grids and PNG output."""

from flowforge.viz.grid import make_grid, save_image, save_rows

__all__ = ["make_grid", "save_image", "save_rows"]
