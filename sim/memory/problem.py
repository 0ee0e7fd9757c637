"""A device's ops as an access sequence over tensors, for scratchpad planning.

The model is COSMA's (Li, Gupta and Malik, "Combined Scheduling, Memory
Allocation and Tensor Replacement for Minimizing Off-Chip Data Accesses of
DNN Accelerators", arXiv:2311.18246, 2023): the accelerator runs one operator
at a time, every tensor an operator reads or writes must be resident in the
scratchpad while it runs, and tensors move between the scratchpad and the
off-chip tier (the lower tier) only by explicit fills (lower -> scratchpad)
and spills (scratchpad -> lower). Tensors are immutable (written once by
their producer), so a tensor is spilled at most once.

From a trace (``problem_from_ops``), for each compute op of the device:

- its output tensor: ``tensor`` (size ``alloc_bytes``, else ``bytes_written``),
  or ``op<ID>.out`` of ``bytes_written`` bytes when unnamed;
- the tensors it reads: the outputs of the ops it lists in ``deps``
  (through copies and collectives, which are not managed);
- a private input ``op<ID>.in`` for the bytes it reads beyond those tensors
  (weights and inputs that live off-chip), fetched for this op alone.

A tensor is dead after its last reader (or the op that ``frees`` it); one
that nobody frees and nobody reads after it is produced (a named tensor no
op frees, or a final output) is live-out: it must reach the lower tier.

Traffic is split as in COSMA: compulsory bytes (the first fill of each
tensor that starts off-chip, and the write-back of each live-out tensor) are
what any schedule pays; everything else (re-fills and spills of live
tensors) is non-compulsory and depends on the order and the replacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from sim.errors import AccsimError
from sim.workload.trace import COMM_OPS, Op


class ScratchpadError(AccsimError):
    """A scratchpad plan that cannot exist (one line, exit status 2)."""


@dataclass(frozen=True)
class Tensor:
    """A tensor: its size, the step that produces it (None: it starts in the
    lower tier) and whether it must reach the lower tier at the end."""

    name: str
    size_bytes: int
    producer: int | None
    live_out: bool = False

    @property
    def external(self) -> bool:
        return self.producer is None


@dataclass(frozen=True)
class Step:
    """One op: the tensors it reads and the one it writes (both resident while it runs)."""

    op_id: int
    name: str
    reads: tuple[str, ...]
    output: str | None

    @property
    def needs(self) -> tuple[str, ...]:
        return self.reads + ((self.output,) if self.output else ())


@dataclass(frozen=True)
class Problem:
    """Steps (in trace order, a topological order), tensors, precedence and capacity."""

    capacity_bytes: int
    steps: tuple[Step, ...]
    tensors: dict[str, Tensor]
    preds: tuple[tuple[int, ...], ...]
    frees_at: dict[str, int] = field(default_factory=dict)

    def size(self, name: str) -> int:
        return self.tensors[name].size_bytes

    def needed_bytes(self, step: int) -> int:
        return sum(self.size(t) for t in self.steps[step].needs)

    def last_use(self, order: Sequence[int]) -> dict[str, int]:
        """Position in ``order`` of each tensor's last need (or the op freeing it)."""
        position = {step: pos for pos, step in enumerate(order)}
        last: dict[str, int] = {}
        for pos, step in enumerate(order):
            for name in self.steps[step].needs:
                last[name] = pos
        for name, step in self.frees_at.items():
            if name in last and step in position:
                last[name] = max(last[name], position[step])
        return last

    def compulsory_bytes(self) -> int:
        """Bytes every schedule moves: first fills of tensors that start off-chip
        (and are read) plus write-backs of live-out tensors."""
        read = {name for step in self.steps for name in step.reads}
        return sum(t.size_bytes for t in self.tensors.values()
                   if (t.external and t.name in read) or (not t.external and t.live_out))

    def check_fits(self, where: str) -> None:
        """Every op's tensors must fit in the scratchpad at once."""
        for index, step in enumerate(self.steps):
            need = self.needed_bytes(index)
            if need > self.capacity_bytes:
                biggest = max(step.needs, key=self.size)
                raise ScratchpadError(
                    f"{where}: op {step.op_id} ({step.name}) needs {need} bytes resident at once "
                    f"(largest tensor {biggest!r}, {self.size(biggest)} bytes) but the scratchpad "
                    f"holds {self.capacity_bytes} bytes")


def _bytes(value: float) -> int:
    return int(math.ceil(value))


def problem_from_ops(ops: Sequence[Op], capacity_bytes: int, managed: Sequence[Op] | None = None) -> Problem:
    """The access sequence of ``managed`` ops (default: every compute op of
    ``ops``), in trace order. ``ops`` is the whole trace, used to follow
    dependencies through ops that are not managed (copies, collectives)."""
    by_id = {op.id: op for op in ops}
    managed = [op for op in ops if op.op not in COMM_OPS and op.op != "copy"] if managed is None else list(managed)
    index = {op.id: i for i, op in enumerate(managed)}
    output: dict[int, str] = {}
    unnamed: set[str] = set()
    tensors: dict[str, Tensor] = {}
    for i, op in enumerate(managed):
        size = op.alloc_bytes if op.tensor and op.alloc_bytes is not None else op.bytes_written
        if size > 0 or op.tensor:
            name = op.tensor or f"op{op.id}.out"
            if not op.tensor:
                unnamed.add(name)
            output[op.id] = name
            tensors[name] = Tensor(name, _bytes(size), i)

    def managed_preds(op: Op) -> list[int]:
        """Managed ops ``op`` depends on, looking through unmanaged ones."""
        found: list[int] = []
        stack = list(op.deps)
        seen: set[int] = set()
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            if dep in index:
                found.append(dep)
            elif dep in by_id:
                stack.extend(by_id[dep].deps)
        return sorted(found, key=index.get)

    steps: list[Step] = []
    preds: list[tuple[int, ...]] = []
    readers: dict[str, int] = {}
    for i, op in enumerate(managed):
        pred_ids = managed_preds(op)
        reads = list(dict.fromkeys(output[d] for d in pred_ids if d in output))
        covered = sum(tensors[r].size_bytes for r in reads)
        rest = _bytes(op.bytes_read) - covered
        if rest > 0:
            private = f"op{op.id}.in"
            tensors[private] = Tensor(private, rest, None)
            reads.append(private)
        for r in reads:
            readers[r] = i
        steps.append(Step(op.id, op.name, tuple(reads), output.get(op.id)))
        preds.append(tuple(index[d] for d in pred_ids))
    frees_at: dict[str, int] = {}
    for i, op in enumerate(managed):
        for name in op.frees:
            if name in tensors:
                frees_at[name] = i
    for name, tensor in list(tensors.items()):
        if tensor.external:
            continue
        freed = name in frees_at
        read_later = readers.get(name, -1) > tensor.producer
        live_out = (not freed) if name not in unnamed else not read_later
        if live_out:
            tensors[name] = Tensor(name, tensor.size_bytes, tensor.producer, True)
    return Problem(int(capacity_bytes), tuple(steps), tensors, tuple(preds), frees_at)
