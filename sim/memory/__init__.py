"""Memory hierarchy management: a scratchpad as a managed tier.

``problem``: a trace's ops on one device as an access sequence over tensors;
``replacement``: LRU and Belady replacement for a fixed op order, with
optional address allocation; ``ilp``: COSMA's combined op order, allocation
and replacement as an integer linear program (HiGHS), with a
divide-and-conquer heuristic for graphs too large for it; ``manager``: the
scenario hook that plans each device's scratchpad and rewrites the trace with
the fill and spill copies the plan implies, so that they run as real
transfers; ``config``: the ``memory.scratchpad`` scenario schema.
"""
