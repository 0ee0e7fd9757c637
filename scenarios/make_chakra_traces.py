"""Write the example Chakra execution traces in traces/ through the et_def schema.

    python scenarios/make_chakra_traces.py

- ``traces/chakra_dp.<rank>.et`` (4 ranks) and ``traces/chakra_dp.comm_groups.json``:
  data parallelism. Each rank runs 4 layers forward (200 us each) and backward
  (400 us each); after each layer's backward an all-reduce of its 16 MiB of
  gradients on communicator group "0" (all four ranks) starts, and the
  optimizer step (100 us) waits for all of them.
- ``traces/chakra_pipeline.<rank>.et`` (2 ranks): a 2-stage GPipe pipeline over
  4 microbatches, forward 300 us and backward 600 us per microbatch and stage;
  activations (8 MiB) go from stage 0 to stage 1 and gradients back, as
  send/receive pairs matched by tag.

Their replays' step times in closed form are in scenarios/chakra_dp.yaml,
scenarios/chakra_pipeline.yaml and tests/test_import_chakra.py. The imported
traces beside them are ``accsim import chakra traces/chakra_dp --comm-groups
traces/chakra_dp.comm_groups.json --out traces/chakra_dp.arrow`` and
``accsim import chakra traces/chakra_pipeline --out traces/chakra_pipeline.arrow``.
"""

from __future__ import annotations

import json
from pathlib import Path

from sim.importers.chakra_schema import COMM_TYPE, NODE_TYPE, GlobalMetadata, Node, attr, write_et

TRACES = Path(__file__).resolve().parent.parent / "traces"
MIB = 1 << 20
DP = {"ranks": 4, "layers": 4, "fwd_us": 200, "bwd_us": 400, "opt_us": 100, "grad_bytes": 16 * MIB}
PP = {"microbatches": 4, "fwd_us": 300, "bwd_us": 600, "act_bytes": 8 * MIB}


def comp(node_id, name, micros, deps, num_ops=0, tensor_size=0):
    return Node(id=node_id, name=name, type=NODE_TYPE["COMP_NODE"], duration_micros=micros,
                data_deps=deps, attr=[attr("is_cpu_op", bool_val=False), attr("num_ops", int64_val=num_ops),
                                      attr("tensor_size", uint64_val=tensor_size)])


def dp_rank() -> list:
    nodes, last, grads = [], [], []
    for layer in range(DP["layers"]):
        nodes.append(comp(len(nodes), f"fwd.layer{layer}.linear", DP["fwd_us"], last))
        last = [nodes[-1].id]
    for layer in reversed(range(DP["layers"])):
        nodes.append(comp(len(nodes), f"bwd.layer{layer}.linear", DP["bwd_us"], last))
        last = [nodes[-1].id]
        nodes.append(Node(id=len(nodes), name=f"allreduce.layer{layer}.grad", type=NODE_TYPE["COMM_COLL_NODE"],
                          data_deps=last, attr=[attr("is_cpu_op", bool_val=False),
                                                attr("comm_type", int64_val=COMM_TYPE["ALL_REDUCE"]),
                                                attr("comm_size", int64_val=DP["grad_bytes"]),
                                                attr("pg_name", string_val="0")]))
        grads.append(nodes[-1].id)
    nodes.append(comp(len(nodes), "optimizer.step", DP["opt_us"], last + grads))
    return nodes


def p2p(node_id, name, send, peer, rank, tag, deps):
    kind = "COMM_SEND_NODE" if send else "COMM_RECV_NODE"
    ends = [attr("comm_src", int32_val=rank if send else peer), attr("comm_dst", int32_val=peer if send else rank)]
    return Node(id=node_id, name=name, type=NODE_TYPE[kind], data_deps=deps,
                attr=[attr("is_cpu_op", bool_val=False), *ends, attr("comm_tag", int32_val=tag),
                      attr("comm_size", int64_val=PP["act_bytes"])])


def pipeline_rank(stage: int) -> list:
    """GPipe: all forwards, then all backwards in reverse microbatch order."""
    m, nodes, last = PP["microbatches"], [], []
    for mb in range(m):
        if stage == 1:
            nodes.append(p2p(len(nodes), f"recv.act.mb{mb}", False, 0, 1, mb, []))
            deps = last + [nodes[-1].id]
        else:
            deps = last
        nodes.append(comp(len(nodes), f"fwd.stage{stage}.mb{mb}", PP["fwd_us"], deps))
        last = [nodes[-1].id]
        if stage == 0:
            nodes.append(p2p(len(nodes), f"send.act.mb{mb}", True, 1, 0, mb, last))
    for mb in reversed(range(m)):
        if stage == 0:
            nodes.append(p2p(len(nodes), f"recv.grad.mb{mb}", False, 1, 0, 100 + mb, last))
            deps = last + [nodes[-1].id]
        else:
            deps = last
        nodes.append(comp(len(nodes), f"bwd.stage{stage}.mb{mb}", PP["bwd_us"], deps))
        last = [nodes[-1].id]
        if stage == 1:
            nodes.append(p2p(len(nodes), f"send.grad.mb{mb}", True, 0, 1, 100 + mb, last))
    return nodes


def write(folder: Path, stem: str, per_rank: list[list]) -> None:
    for rank, nodes in enumerate(per_rank):
        with open(folder / f"{stem}.{rank}.et", "wb") as fh:
            write_et(fh, GlobalMetadata(version="0.0.4"), nodes)


def main(folder: Path = TRACES) -> None:
    write(folder, "chakra_dp", [dp_rank() for _ in range(DP["ranks"])])
    (folder / "chakra_dp.comm_groups.json").write_text(json.dumps({"0": list(range(DP["ranks"]))}) + "\n")
    write(folder, "chakra_pipeline", [pipeline_rank(0), pipeline_rank(1)])


if __name__ == "__main__":
    main()
