"""Chakra execution traces (one ``PREFIX.<rank>.et`` per rank) as an accsim trace.

The semantics follow ASTRA-sim's workload layer, which replays the same files
(astra-sim/astra-sim ``astra-sim/workload/Workload.cc``) and Chakra's feeder
(mlcommons/chakra ``src/feeder/et_feeder_node.cpp``, for the attribute types):

- a node runs once its ``data_deps`` and ``ctrl_deps`` (node ids in the same
  file) have finished;
- ``COMP_NODE``: measured ``duration_micros``. On the GPU (``is_cpu_op``
  false or absent) it becomes a compute op on stream 0: one compute node at a
  time per rank, in the file's topological order, as ASTRA-sim's
  ``HardwareResource`` runs one GPU compute node at a time. ``flops`` =
  ``num_ops``, ``bytes_read`` = ``tensor_size``; with ``reprice`` and
  ``num_ops`` > 0 the measured time is dropped, so the replay device
  prices it (a roofline like ASTRA-sim's ``issue_comp``, with the matrix peak
  for names of matrix kernels, else the vector peak). A CPU node
  (``is_cpu_op`` true) becomes a ``host`` op on stream 1 and keeps its
  duration (ASTRA-sim replays CPU nodes too);
- ``MEM_LOAD_NODE`` / ``MEM_STORE_NODE``: a ``copy`` of ``tensor_size`` bytes
  from the remote tier to the local one / back, on stream 2;
- ``COMM_COLL_NODE``: ``comm_type`` (CollectiveCommType) and ``comm_size``
  bytes on the group ``pg_name`` names: in the communicator-group JSON
  ASTRA-sim takes (``{"<pg_name>": [ranks...]}``), or in a METADATA_NODE
  carrying PyTorch's process-group list (``[{"pg_name": ..., "ranks": [...]}]``
  in ``inputs.values``, as ``Workload::issue_pytorch_pg_metadata`` reads it);
  without ``pg_name``, every rank. The k-th collective on a group in each
  member's file is one collective: an op for the whole group whose deps are
  every member's node deps;
- ``COMM_SEND_NODE`` / ``COMM_RECV_NODE``: the k-th send from rank s to rank
  d with ``comm_tag`` t and the k-th receive on d from s with tag t are one
  ``sendrecv`` of ``comm_size`` bytes. It starts when the send's
  dependencies are met (an eager send: ASTRA-sim's network starts moving the
  message when the send is issued); nodes after the receive wait for the
  transfer and for the receive's own dependencies (it completes at
  max(posted, arrived));
- ``INVALID_NODE`` and ``METADATA_NODE`` take no time; nodes depending on them
  depend on what they depended on. Other node types (storage, batch,
  checkpoint) are rejected.

Communication ops each get their own stream (from 16 up), so only the ET's
dependencies order them. Problems (a truncated file, a node depending on a
missing node, a cycle, a collective whose group disagrees across ranks, an
unmatched send) raise TraceImportError naming the file and node.
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.importers import TraceImportError, match_across_ranks
from sim.workload.trace import Op

COMM_OP = {"ALL_REDUCE": "allreduce", "REDUCE": "reduce", "ALL_GATHER": "allgather", "GATHER": "gather",
           "SCATTER": "scatter", "BROADCAST": "broadcast", "ALL_TO_ALL": "alltoall",
           "REDUCE_SCATTER": "reduce_scatter", "REDUCE_SCATTER_BLOCK": "reduce_scatter",
           "BARRIER": "allreduce"}
PASS_THROUGH = ("INVALID_NODE", "METADATA_NODE")
MATRIX_NAME = re.compile(r"(gemm|matmul|\bmm\b|addmm|bmm|linear|conv|attention|attn|xmma|cutlass)", re.I)
STREAM_GPU, STREAM_CPU, STREAM_MEMORY, FIRST_COMM_STREAM = 0, 1, 2, 16


@dataclass
class RankFile:
    """One rank's parsed file: nodes in file order and their attributes."""

    rank: int
    path: Path
    version: str
    nodes: list = field(default_factory=list)
    attrs: list[dict[str, Any]] = field(default_factory=list)
    index: dict[int, int] = field(default_factory=dict)   # node id -> position

    def where(self, position: int) -> str:
        node = self.nodes[position]
        return f"{self.path}: node {node.id} ({node.name or 'unnamed'})"


def rank_files(prefix: str | Path) -> list[Path]:
    """PREFIX.0.et, PREFIX.1.et, ... (every rank from 0 up, none missing)."""
    prefix = Path(prefix)
    folder = prefix.parent if str(prefix.parent) else Path(".")
    pattern = re.compile(re.escape(prefix.name) + r"\.(\d+)\.et$")
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match:
                found[int(match.group(1))] = path
    if not found:
        raise TraceImportError(f"{prefix}: no Chakra files {prefix}.<rank>.et (expected {prefix}.0.et, ...)")
    missing = [r for r in range(max(found) + 1) if r not in found]
    if missing:
        raise TraceImportError(f"{prefix}.{missing[0]}.et: missing (ranks 0..{max(found)} need one file each)")
    return [found[r] for r in range(len(found))]


def read_rank(path: Path, rank: int) -> RankFile:
    """Parse one .et file: GlobalMetadata, then Node messages."""
    from google.protobuf.message import DecodeError

    from sim.importers.chakra_schema import FramingError, GlobalMetadata, Node, attribute_value, read_messages
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TraceImportError(f"{path}: cannot read ({exc.strerror})") from None
    messages = read_messages(data)
    try:
        first = next(messages, None)
        if first is None:
            raise TraceImportError(f"{path}: empty file; expected a Chakra GlobalMetadata message then nodes")
        metadata = GlobalMetadata()
        try:
            metadata.ParseFromString(first[1])
        except DecodeError:
            raise TraceImportError(f"{path}: byte 0: not a Chakra GlobalMetadata message") from None
        out = RankFile(rank, path, metadata.version)
        for offset, payload in messages:
            node = Node()
            try:
                node.ParseFromString(payload)
            except DecodeError:
                after = f" after node {out.nodes[-1].id}" if out.nodes else ""
                raise TraceImportError(f"{path}: byte {offset}{after}: not a Chakra Node message") from None
            if node.id in out.index:
                raise TraceImportError(f"{path}: node {node.id} ({node.name}): duplicate node id")
            out.index[node.id] = len(out.nodes)
            out.nodes.append(node)
            out.attrs.append({a.name: attribute_value(a) for a in node.attr})
    except FramingError as exc:
        last = f" (after node {out.nodes[-1].id})" if 'out' in locals() and out.nodes else ""
        raise TraceImportError(f"{path}: truncated or corrupt protobuf {exc}{last}") from None
    return out


def _node_type(rank_file: RankFile, position: int) -> str:
    from sim.importers.chakra_schema import NODE_TYPES
    number = rank_file.nodes[position].type
    if number not in NODE_TYPES:
        raise TraceImportError(f"{rank_file.where(position)}: unknown node type {number}")
    return NODE_TYPES[number]


def topological_positions(rank_file: RankFile) -> list[int]:
    """Node positions in dependency order, ties by file position; checks that
    every dependency exists and that there is no cycle."""
    nodes = rank_file.nodes
    successors: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)
    for position, node in enumerate(nodes):
        for dep in dict.fromkeys([*node.data_deps, *node.ctrl_deps]):
            source = rank_file.index.get(dep)
            if source is None:
                raise TraceImportError(f"{rank_file.where(position)}: depends on node {dep}, which is not "
                                       f"in the file (expected one of its node ids)")
            if source == position:
                raise TraceImportError(f"{rank_file.where(position)}: depends on itself")
            successors[source].append(position)
            waiting[position] += 1
    ready = [p for p, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        position = heapq.heappop(ready)
        order.append(position)
        for nxt in successors[position]:
            waiting[nxt] -= 1
            if not waiting[nxt]:
                heapq.heappush(ready, nxt)
    if len(order) != len(nodes):
        import networkx as nx
        graph = nx.DiGraph((s, d) for s, succ in enumerate(successors) for d in succ
                           if waiting[s] and waiting[d])
        cycle = [edge[0] for edge in nx.find_cycle(graph)]
        names = " -> ".join(f"{nodes[p].id} ({nodes[p].name})" for p in cycle + cycle[:1])
        raise TraceImportError(f"{rank_file.where(cycle[0])}: dependency cycle: {names}")
    return order


def load_comm_groups(path: str | Path | None, world: int) -> dict[str, tuple[int, ...]]:
    """ASTRA-sim's communicator-group JSON: {"<id>": [rank, ...], ...}."""
    if path is None:
        return {}
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TraceImportError(f"{path}: cannot read communicator groups ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceImportError(f"{path}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise TraceImportError(f"{path}: expected an object {{\"<group id>\": [ranks...]}}")
    return {str(name): _group(ranks, world, f"{path}: group {name!r}") for name, ranks in raw.items()}


def _group(ranks: Any, world: int, where: str) -> tuple[int, ...]:
    if not isinstance(ranks, list) or any(isinstance(r, bool) or not isinstance(r, int) for r in ranks):
        raise TraceImportError(f"{where}: expected a list of integer ranks, got {ranks!r}")
    if not ranks:
        return tuple(range(world))  # ASTRA-sim: an empty list means every rank
    if len(set(ranks)) != len(ranks) or not all(0 <= r < world for r in ranks):
        raise TraceImportError(f"{where}: expected distinct ranks in 0..{world - 1}, got {ranks}")
    return tuple(ranks)


def metadata_groups(rank_file: RankFile, position: int, world: int) -> dict[str, tuple[int, ...]]:
    """Process groups a METADATA_NODE declares (PyTorch's pg list in inputs.values), if any."""
    text = rank_file.nodes[position].inputs.values.strip()
    if "pg_name" not in text:
        return {}
    for candidate in (text, text[2:-2]):  # plain JSON, or ASTRA-sim's "['<json>']" framing
        try:
            items = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(items, list) and len(items) == 1 and isinstance(items[0], str):
            try:
                items = json.loads(items[0])
            except json.JSONDecodeError:
                continue
        if isinstance(items, list) and all(isinstance(i, dict) and "pg_name" in i for i in items):
            where = rank_file.where(position)
            return {str(i["pg_name"]): _group(i.get("ranks", []), world, f"{where}: pg {i['pg_name']!r}")
                    for i in items}
    raise TraceImportError(f"{rank_file.where(position)}: inputs.values mentions pg_name but is not a "
                           f"JSON list of {{\"pg_name\": ..., \"ranks\": [...]}}")


@dataclass
class _Pending:
    """A communication node waiting for its partners on other ranks."""

    rank: int
    position: int
    kind: str
    size: float


class _Builder:
    """Turns the parsed ranks into ops: ids, streams, resolved dependencies."""

    def __init__(self, files: list[RankFile], groups: dict[str, tuple[int, ...]], reprice: bool,
                 local_tier: str, remote_tier: str):
        self.files, self.groups, self.reprice = files, groups, reprice
        self.local_tier, self.remote_tier = local_tier, remote_tier
        self.world = len(files)
        self.op_of: dict[tuple[int, int], int] = {}        # (rank, position) -> op id
        self.skipped: set[tuple[int, int]] = set()
        self.received: dict[tuple[int, int], int] = {}     # receive node -> its sendrecv op
        self.records: list[dict[str, Any]] = []            # op fields, with node deps to resolve
        self.next_stream = FIRST_COMM_STREAM

    def node_deps(self, rank: int, position: int) -> list[tuple[int, int]]:
        rank_file = self.files[rank]
        node = rank_file.nodes[position]
        return [(rank, rank_file.index[d]) for d in dict.fromkeys([*node.data_deps, *node.ctrl_deps])]

    def add(self, members: list[tuple[int, int]], **fields) -> None:
        op_id = len(self.records)
        for key in members:
            self.op_of[key] = op_id
        self.records.append({"id": op_id, "members": members, **fields})

    def comm_stream(self) -> int:
        self.next_stream += 1
        return self.next_stream - 1

    def resolve(self, key: tuple[int, int], seen: set) -> list[int]:
        """Op ids a dependency on node ``key`` means (through pass-through nodes)."""
        if key in self.op_of:
            return [self.op_of[key]]
        if key in seen:
            return []
        seen.add(key)
        through = [op for dep in self.node_deps(*key) for op in self.resolve(dep, seen)]
        if key in self.received:  # done when the data has arrived and the receive was posted
            return [self.received[key]] + through
        return through

    def ops(self) -> list[Op]:
        out = []
        for record in self.records:
            members = record.pop("members")
            deps = []
            for key in members:
                for dep in self.node_deps(*key):
                    deps += self.resolve(dep, set())
            op_id = record["id"]
            out.append(Op(deps=tuple(d for d in dict.fromkeys(deps) if d != op_id), **record))
        return out


def _size(attrs: dict, key: str, where: str) -> float:
    value = attrs.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise TraceImportError(f"{where}: attribute {key!r}: expected a non-negative number, got {value!r}")
    return float(value)


def _compute(builder: _Builder, rank: int, position: int) -> None:
    rank_file = builder.files[rank]
    node, attrs = rank_file.nodes[position], rank_file.attrs[position]
    where = rank_file.where(position)
    duration_s = node.duration_micros / 1e6
    name = node.name or f"node{node.id}"
    common = dict(name=name, rank=rank, layer=None)
    if attrs.get("is_cpu_op"):
        builder.add([(rank, position)], op="host", flops=0.0, bytes_read=0.0, bytes_written=0.0,
                    duration_s=duration_s, stream=STREAM_CPU, **common)
        return
    flops = _size(attrs, "num_ops", where)
    keep = not (builder.reprice and flops > 0)  # num_ops 0 or absent: nothing to price from
    builder.add([(rank, position)], op="gemm" if MATRIX_NAME.search(name) else "elementwise",
                flops=flops, bytes_read=_size(attrs, "tensor_size", where), bytes_written=0.0,
                duration_s=duration_s if keep else None, stream=STREAM_GPU, **common)


def _memory(builder: _Builder, rank: int, position: int, kind: str) -> None:
    rank_file = builder.files[rank]
    node, attrs = rank_file.nodes[position], rank_file.attrs[position]
    size = _size(attrs, "tensor_size", rank_file.where(position))
    src, dst = ((builder.remote_tier, builder.local_tier) if kind == "MEM_LOAD_NODE"
                else (builder.local_tier, builder.remote_tier))
    builder.add([(rank, position)], name=node.name or f"node{node.id}", op="copy", flops=0.0,
                bytes_read=size, bytes_written=size, src_tier=src, dst_tier=dst, rank=rank,
                stream=STREAM_MEMORY)


def _group_of(builder: _Builder, rank: int, position: int) -> tuple[str, tuple[int, ...]]:
    rank_file = builder.files[rank]
    name = rank_file.attrs[position].get("pg_name")
    if name is None or name == "":
        return "", tuple(range(builder.world))
    name = str(name)
    if name not in builder.groups:
        raise TraceImportError(f"{rank_file.where(position)}: pg_name {name!r} is not a known communicator "
                               f"group; pass --comm-groups FILE.json (ASTRA-sim's {{\"{name}\": [ranks...]}})")
    group = builder.groups[name]
    if rank not in group:
        raise TraceImportError(f"{rank_file.where(position)}: rank {rank} runs a collective on group "
                               f"{name!r}, which is ranks {list(group)}")
    return name, group


def _collectives(builder: _Builder, pending: dict[str, dict[int, list[_Pending]]]) -> None:
    """The k-th collective on a group in every member's file is one collective."""
    from sim.importers.chakra_schema import COMM_TYPES
    for name, by_rank in pending.items():
        group = builder.groups[name] if name else tuple(range(builder.world))
        label = f"group {name!r}" if name else "the world group"

        def count_error(few, many, counts, label=label):
            return TraceImportError(f"{builder.files[few].path}: rank {few} has {counts[few]} collectives on "
                                    f"{label} but rank {many} has {counts[many]}; every member must run each one")

        def mismatch_error(k, call, first, name=name):
            return TraceImportError(
                f"{builder.files[call.rank].where(call.position)}: collective {k} on group {name or 'world'!r} is "
                f"{COMM_TYPES[call.kind]} of {call.size:.0f} bytes, but on rank {first.rank} "
                f"({builder.files[first.rank].where(first.position)}) it is {COMM_TYPES[first.kind]} of "
                f"{first.size:.0f} bytes")

        for calls in match_across_ranks(group, by_rank, lambda c: (c.kind, c.size), count_error, mismatch_error):
            first = calls[0]
            node = builder.files[first.rank].nodes[first.position]
            builder.add([(c.rank, c.position) for c in calls], name=node.name or f"coll{node.id}",
                        op=COMM_OP[COMM_TYPES[first.kind]], flops=0.0, bytes_read=first.size,
                        bytes_written=first.size, group=group, rank=group[0], stream=builder.comm_stream())


def _point_to_point(builder: _Builder, sends: dict, recvs: dict) -> None:
    for key in sorted(set(sends) | set(recvs)):
        src, dst, tag = key
        out, into = sends.get(key, []), recvs.get(key, [])
        if len(out) != len(into):
            rank, item = (src, out[len(into)]) if len(out) > len(into) else (dst, into[len(out)])
            side = "send to rank" if len(out) > len(into) else "receive from rank"
            peer = dst if len(out) > len(into) else src
            raise TraceImportError(f"{builder.files[rank].where(item.position)}: {side} {peer} with tag {tag} "
                                   f"has no matching {'receive' if side.startswith('send') else 'send'} "
                                   f"({len(out)} sends, {len(into)} receives)")
        for send, recv in zip(out, into):
            if recv.size and send.size != recv.size:
                raise TraceImportError(f"{builder.files[dst].where(recv.position)}: receives {recv.size:.0f} "
                                       f"bytes with tag {tag}, but the send "
                                       f"({builder.files[src].where(send.position)}) sends {send.size:.0f}")
            node = builder.files[src].nodes[send.position]
            builder.received[(dst, recv.position)] = len(builder.records)
            builder.add([(src, send.position)], name=node.name or f"send{node.id}",
                        op="sendrecv", flops=0.0, bytes_read=send.size, bytes_written=send.size,
                        group=(src, dst), rank=src, stream=builder.comm_stream())


def _int_attr(attrs: dict, key: str, where: str, default: int | None = None) -> int:
    value = attrs.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceImportError(f"{where}: attribute {key!r}: expected an integer, got {value!r}")
    return value


def convert(prefix: str | Path, comm_groups: str | Path | None = None, reprice: bool = False,
            local_tier: str = "hbm", remote_tier: str = "host") -> list[Op]:
    """The ops of a set of Chakra files (see the module docstring)."""
    files = [read_rank(path, rank) for rank, path in enumerate(rank_files(prefix))]
    world = len(files)
    groups = load_comm_groups(comm_groups, world)
    orders = [topological_positions(f) for f in files]
    declared: dict[str, tuple[tuple[int, ...], str]] = {}
    for rank_file, order in zip(files, orders):
        for position in order:
            if _node_type(rank_file, position) == "METADATA_NODE":
                for name, ranks in metadata_groups(rank_file, position, world).items():
                    if name in declared and declared[name][0] != ranks:
                        raise TraceImportError(f"{rank_file.where(position)}: process group {name!r} is ranks "
                                               f"{list(ranks)} here but {list(declared[name][0])} in "
                                               f"{declared[name][1]}")
                    declared[name] = (ranks, str(rank_file.path))
    for name, (ranks, where) in declared.items():
        if name in groups and groups[name] != ranks:
            raise TraceImportError(f"{where}: process group {name!r} is ranks {list(ranks)}, but "
                                   f"{comm_groups} says {list(groups[name])}")
        groups.setdefault(name, ranks)
    builder = _Builder(files, groups, reprice, local_tier, remote_tier)
    collectives: dict[str, dict[int, list[_Pending]]] = {}
    sends: dict[tuple, list[_Pending]] = {}
    recvs: dict[tuple, list[_Pending]] = {}
    for rank, (rank_file, order) in enumerate(zip(files, orders)):
        for position in order:
            kind = _node_type(rank_file, position)
            attrs, where = rank_file.attrs[position], rank_file.where(position)
            if kind in PASS_THROUGH:
                builder.skipped.add((rank, position))
            elif kind == "COMP_NODE":
                _compute(builder, rank, position)
            elif kind in ("MEM_LOAD_NODE", "MEM_STORE_NODE"):
                _memory(builder, rank, position, kind)
            elif kind == "COMM_COLL_NODE":
                comm = _int_attr(attrs, "comm_type", where)
                from sim.importers.chakra_schema import COMM_TYPES
                if comm not in COMM_TYPES:
                    raise TraceImportError(f"{where}: comm_type {comm}: expected one of {COMM_TYPES}")
                name, _ = _group_of(builder, rank, position)
                collectives.setdefault(name, {}).setdefault(rank, []).append(
                    _Pending(rank, position, comm, _size(attrs, "comm_size", where)))
            elif kind in ("COMM_SEND_NODE", "COMM_RECV_NODE"):
                send = kind == "COMM_SEND_NODE"
                peer = _int_attr(attrs, "comm_dst" if send else "comm_src", where)
                own = _int_attr(attrs, "comm_src" if send else "comm_dst", where, rank)
                if own != rank or not 0 <= peer < world or peer == rank:
                    raise TraceImportError(f"{where}: a {'send' if send else 'receive'} on rank {rank} needs "
                                           f"comm_{'src' if send else 'dst'} {rank} (or none) and a peer in "
                                           f"0..{world - 1} other than itself; got {own} and {peer}")
                key = (rank, peer, _int_attr(attrs, "comm_tag", where, 0)) if send else \
                      (peer, rank, _int_attr(attrs, "comm_tag", where, 0))
                (sends if send else recvs).setdefault(key, []).append(
                    _Pending(rank, position, 0, _size(attrs, "comm_size", where)))
            else:
                raise TraceImportError(f"{where}: node type {kind} is not supported; expected compute, "
                                       f"memory or communication nodes")
    _collectives(builder, collectives)
    _point_to_point(builder, sends, recvs)
    ops = builder.ops()
    _check_deadlock(ops, builder, str(prefix))
    return ops


def _check_deadlock(ops: list[Op], builder: _Builder, prefix: str) -> None:
    """Matching collectives and sends across ranks can close a cycle no single
    file has (ranks waiting on each other): name its nodes."""
    from sim.errors import TraceError
    from sim.workload.trace import validate_ops
    try:
        validate_ops(ops, prefix)
    except TraceError as exc:
        if "dependency cycle" not in str(exc):
            raise
        from sim.workload.trace import _find_cycle
        cycle = _find_cycle(ops)[:-1]
        members = {op_id: key for key, op_id in builder.op_of.items()}
        names = " -> ".join(f"rank {members[i][0]} node {builder.files[members[i][0]].nodes[members[i][1]].id} "
                            f"({ops[i].name})" for i in cycle + cycle[:1])
        raise TraceImportError(f"{prefix}.*.et: matching collectives and sends across ranks deadlocks "
                               f"(the ranks wait on each other): {names}") from None
