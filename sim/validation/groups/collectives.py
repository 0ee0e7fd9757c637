"""Collective bus bandwidth against the figures NCCL's maintainers published."""

from __future__ import annotations

from sim.validation import Group, Point


def _busbw_gb_s(topology: str, op: str, algorithm: str, nbytes: float) -> float:
    from sim.network.collectives import normalize_op
    from sim.network.runtime import simulate_collective
    from sim.network.topology import load_topology
    result = simulate_collective(load_topology(topology), normalize_op(op), algorithm, nbytes)
    return result.busbw_bytes_per_s / 1e9


def _point(name, published, source, role, topology, op, algorithm, nbytes, size_text, note=""):
    return Point(name=name, published=published, unit="GB/s busbw", source=source, role=role,
                 predict=lambda: _busbw_gb_s(topology, op, algorithm, nbytes),
                 command=f"accsim collective --topology {topology} --op {op} --algorithm {algorithm} "
                         f"--bytes {size_text}", note=note)


def group() -> Group:
    return Group(
        name="collectives",
        title="Collective bus bandwidth (NCCL maintainers' figures)",
        description=(
            "All-reduce bus bandwidth (nccl-tests definition: algbw x 2(p-1)/p) on one node. The "
            "NVLink `efficiency` of each cluster file (`topologies/clusters/`) is set from these "
            "plateaus, so they are calibration points."),
        points=(
            _point("8x A100 all-reduce, 4 GiB, ring", 230.0,
                   "NCCL maintainers, NVIDIA/nccl-tests issue #149 and NVIDIA/nccl issue #1054",
                   "calibration", "dgx_a100", "allreduce", "ring", 4 * 2**30, "4GiB"),
            _point("8x H100 all-reduce, 4 GiB, ring", 370.0,
                   "NCCL maintainers, NVIDIA/nccl-tests issue #212", "calibration",
                   "dgx_h100", "allreduce", "ring", 4 * 2**30, "4GiB"),
        ),
        mape_tolerance=0.05, max_tolerance=0.05)
