"""Packaging beyond what pyproject.toml can say: the catalogs at the top of the
repository (topologies/, scenarios/, traces/) ship inside the package as
``sim.data.topologies``, ``sim.data.scenarios`` and ``sim.data.traces``, so a
wheel carries them (sim/paths.py finds them in a checkout and in a wheel)."""

from setuptools import find_packages, setup

CATALOGS = {
    "sim.data.topologies": ("topologies", ["devices/*.yaml", "clusters/*.yaml", "links/*.yaml", "nccl/*.yaml"]),
    "sim.data.scenarios": ("scenarios", ["*.yaml", "*.py", "*.csv", "*.jsonl", "validation/*.yaml"]),
    "sim.data.traces": ("traces", ["*.jsonl", "*.arrow", "*.json", "*.json.gz", "*.et", "*.csv"]),
}

SUBPACKAGES = ["sim.data.topologies.devices", "sim.data.topologies.clusters", "sim.data.topologies.links",
               "sim.data.topologies.nccl", "sim.data.scenarios.validation"]

setup(
    packages=find_packages(include=["sim", "sim.*"]) + list(CATALOGS) + SUBPACKAGES,
    package_dir={name: folder for name, (folder, _) in CATALOGS.items()},
    package_data={name: patterns for name, (_, patterns) in CATALOGS.items()},
)
