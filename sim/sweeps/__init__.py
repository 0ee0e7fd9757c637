"""Sweep layer: design points from a sweep file, run on a Dask cluster,
results as a resumable Parquet dataset."""

from sim.sweeps.points import SweepSpec, expand_points, load_sweep

__all__ = ["SweepSpec", "expand_points", "load_sweep"]
