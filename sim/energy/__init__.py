"""Energy accounting: joules per op, per device and per run, from a timeline.

``model``: the energy spec (pJ per FLOP by unit and dtype, pJ per byte by
memory tier and by link kind, static power) validated with sim.schema, and
the closed form ``op_energy_j``; ``account``: energy of every timeline row,
per-device breakdowns, the power curve, its average and peak.
"""
