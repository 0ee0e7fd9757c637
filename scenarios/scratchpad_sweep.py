"""What if the scratchpad were smaller or larger? Capacity x policy -> traffic, time, energy.

    python scenarios/scratchpad_sweep.py [--out runs/scratchpad_sweep] [--sizes 16,24,32,64,128]
                                         [--policies lru,belady,ilp]

Runs scenarios/npu_scratchpad.yaml (two transformer layers' forward and backward on the NPU)
with the scratchpad's capacity set to each size (MiB) and each replacement policy (ilp solves
windows of 12 ops in turn: divide-and-conquer), prints a table of off-chip bytes (compulsory
and not), makespan and, where the device spec has energy figures, joules; writes the rows to
OUT/results.parquet and, when matplotlib is installed (pip install 'accsim[plot]'), the
curves to OUT/scratchpad_sweep.png next to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENARIO = ROOT / "scenarios" / "npu_scratchpad.yaml"


def sweep(sizes_mib, policies, progress=print):
    """One row per (capacity, policy)."""
    import sim

    rows = []
    for size in sizes_mib:
        for policy in policies:
            result = sim.run(SCENARIO, [f"device_overrides.memory.scratchpad.capacity_bytes={size}MiB",
                                        f"memory.scratchpad.policy={policy}", "memory.scratchpad.compare=[]"])
            device = result.summary["scratchpad"]["devices"][0]
            energy = result.summary.get("energy") or {}
            rows.append({"capacity_mib": size, "policy": policy,
                         "offchip_bytes": device["offchip_bytes"],
                         "compulsory_bytes": device["compulsory_bytes"],
                         "non_compulsory_bytes": device["non_compulsory_bytes"],
                         "makespan_s": result.summary["makespan_s"],
                         "energy_j": energy.get("total_j")})
            progress(f"  {size:>5} MiB  {policy:<7} off-chip {device['offchip_bytes'] / 2**20:8.1f} MiB "
                     f"(non-compulsory {device['non_compulsory_bytes'] / 2**20:7.1f} MiB)  "
                     f"{result.summary['makespan_s'] * 1e6:8.1f} us"
                     + (f"  {energy['total_j'] * 1e3:8.3f} mJ" if energy else ""))
    return rows


def plot(rows, path: Path) -> bool:
    """Off-chip MiB, time and (if known) energy against capacity, one line per policy."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    metrics = [("offchip_bytes", "off-chip traffic (MiB)", 2**-20), ("makespan_s", "time (us)", 1e6)]
    if all(r["energy_j"] is not None for r in rows):
        metrics.append(("energy_j", "energy (mJ)", 1e3))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4))
    for ax, (key, label, scale) in zip(axes, metrics):
        for policy in dict.fromkeys(r["policy"] for r in rows):
            mine = [r for r in rows if r["policy"] == policy]
            ax.plot([r["capacity_mib"] for r in mine], [r[key] * scale for r in mine], marker="o", label=policy)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("scratchpad (MiB)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("npu_scratchpad: two transformer layers, forward + backward")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/scratchpad_sweep", help="output folder")
    parser.add_argument("--sizes", default="16,24,32,48,64,128", help="capacities in MiB, comma-separated")
    parser.add_argument("--policies", default="lru,belady,ilp", help="policies, comma-separated")
    args = parser.parse_args(argv)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sim.errors import AccsimError
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        print(f"--sizes: expected integers (MiB) separated by commas, got {args.sizes!r}", file=sys.stderr)
        return 2
    try:
        rows = sweep(sizes, [p.strip() for p in args.policies.split(",")])
    except AccsimError as exc:
        print(exc, file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".results.parquet.tmp"
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(out / "results.parquet")
    print(f"wrote {out / 'results.parquet'}")
    if plot(rows, out / "scratchpad_sweep.png"):
        print(f"wrote {out / 'scratchpad_sweep.png'}")
    else:
        print("matplotlib is not installed (pip install 'accsim[plot]'): no plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
