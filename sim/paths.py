"""Where the shipped catalogs are: device and cluster specs, scenarios, traces.

In a source checkout (and an editable install) they are the repository's
``topologies/``, ``scenarios/`` and ``traces/`` folders beside the package; in
a wheel, setup.py has packaged them as ``sim/data/<name>/``. Either way these
functions return the folder, so accsim works from any directory.
``$ACCSIM_TOPOLOGIES`` replaces the topologies catalog (tests use it).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def catalog_dir(name: str) -> Path:
    """The shipped folder ``name`` (``topologies``, ``scenarios`` or ``traces``)."""
    packaged = _PACKAGE / "data" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / name


def topologies_dir() -> Path:
    """The device and cluster catalog: $ACCSIM_TOPOLOGIES, else the shipped one."""
    env = os.environ.get("ACCSIM_TOPOLOGIES")
    return Path(env) if env else catalog_dir("topologies")


def yaml_catalog(kind: str) -> dict[str, Path]:
    """Catalog names (file stems) of the YAML specs in ``topologies/KIND``
    (``devices``, ``clusters``, ``links``), sorted, without reading them."""
    folder = topologies_dir() / kind
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def scenarios_dir() -> Path:
    return catalog_dir("scenarios")


def traces_dir() -> Path:
    return catalog_dir("traces")


def scenario_path(name: str) -> Path:
    """A shipped scenario by file name (``quickstart.yaml``) or stem (``quickstart``)."""
    folder = scenarios_dir()
    path = folder / name
    return path if path.suffix else path.with_suffix(".yaml")
