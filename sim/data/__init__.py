"""In a wheel: the shipped catalogs (topologies/, scenarios/, traces/ of the
repository, mapped here by setup.py). In a checkout this folder holds only
this file and sim.paths looks beside the package instead."""
