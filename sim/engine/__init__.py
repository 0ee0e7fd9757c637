"""Engine layer: SimPy resources (unit pools, shared bandwidth, memory ledgers)
and the processes that execute operators on them."""
