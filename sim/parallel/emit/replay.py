"""Unit templates: a schedule unit's ops copied from an earlier microbatch's.

A stage runs hundreds of units (a microbatch's forward or backward of one
model chunk) whose ops differ only by microbatch: the same segments,
collectives and op order; ids, deps, names, the ``microbatch`` field and the
activation tensors (``act.m<m>.c<c>``, ``actw.m<m>.c<c>``) shifted. Emitting
each through the emitters took about 4 us an op (a folded GPT 1T trace is a
million ops); copying the first such unit's ops with new ids takes about one.

A template records one unit as it is emitted: its ops, the ids it allocated
(a contiguous range), the ids it found (``inputs``: each TP rank's pending
waits and last compute op, the sends its receive found reserved) and what it
left (waits, last compute ops, reservations, the FLOPs it added). It replays
a later unit of the same kind only when that unit starts the same way: as
many waits per rank, the same reservations made or found, distinct inputs.
Anything else, or a unit whose ops are not all of this form (a name without
the unit's prefix, a tensor other than its activations, an op of another
microbatch), is emitted by the emitters. The plan restrictions (``usable``)
exclude the techniques whose ops depend on the microbatch in other ways: MoE
routing, context parallelism, sharded data parallelism.
"""

from __future__ import annotations

from operator import itemgetter

from sim.parallel.emit.builder import Stage
from sim.workload.trace import Op, plain_op


def usable(stage: Stage) -> bool:
    """Whether the plan's units are copies of each other up to the microbatch."""
    plan = stage.it.plan
    return stage.it.cfg.moe is None and plan.cp == 1 and plan.zero < 2


def _tensors(m: int, c: int) -> tuple[str, str]:
    return f"act.m{m}.c{c}", f"actw.m{m}.c{c}"


def _start(stage: Stage) -> tuple[tuple, list[int | None]]:
    """How a unit starts: per simulated TP rank (how many waits, whether it
    has no last compute op yet), and the ids it starts from: per rank its
    waits, then its last compute op (None if none)."""
    last, waits = stage.bld.last_compute, stage.waits
    shape, ids = [], []
    for j, rank in stage.ranks.items():
        pending, previous = waits[j], last.get(rank)
        shape.append((len(pending), previous is None))
        ids += pending
        ids.append(previous)
    return tuple(shape), ids


class Recording:
    """A unit being emitted by the emitters, to make a template of."""

    def __init__(self, stage: Stage, m: int, c: int):
        bld = stage.bld
        self.stage, self.m, self.c = stage, m, c
        self.shape, self.inputs = _start(stage)
        self.first_id, self.first_op, self.prefix = bld.next_id, len(bld.ops), stage.prefix
        bld.log = []

    def finish(self) -> Template | None:
        """The template, or None if the unit is not of the form replayed."""
        bld = self.stage.bld
        log, bld.log = bld.log, None
        try:
            return Template(self, bld.ops[self.first_op:], log)
        except _NotTemplate:
            return None


class _NotTemplate(Exception):
    pass


class Template:
    """One recorded unit (see the module docstring)."""

    def __init__(self, rec: Recording, ops: list[Op], log: list):
        stage, m = rec.stage, rec.m
        self.shape, self.m, self.c, self.prefix = rec.shape, m, rec.c, rec.prefix
        self.first_id, self.count = rec.first_id, stage.bld.next_id - rec.first_id
        # the ids the unit found, by slot: its inputs, then the reservations it found made
        found = list(rec.inputs)
        self.reserves: list[tuple[tuple, int | None, int | None]] = []   # (key, found slot, or offset if new)
        self.flops: list[float] = []
        for entry in log:
            if entry[0] == "flops":
                self.flops.append(entry[1])
            elif entry[0] == "reserve" and isinstance(entry[1], tuple) and len(entry[1]) > 1 and entry[1][1] == m:
                _, key, op_id, new = entry
                if new:
                    self.reserves.append((key, None, self._offset(op_id)))
                else:
                    found.append(op_id)
                    self.reserves.append((key, len(found) - 1, None))
            else:
                raise _NotTemplate
        known = [x for x in found if x is not None]
        if len(set(known)) != len(known) or any(self._inside(x) for x in known):
            raise _NotTemplate
        slot_of = {x: i for i, x in enumerate(found) if x is not None}
        self.ops = [self._pattern(op, slot_of) for op in ops]
        # how the unit leaves each rank: (TP rank, device rank, its waits, its last compute op) as refs
        ends = iter(_start(stage)[1])
        self.leaves = [(j, rank, [self._ref(next(ends), slot_of) for _ in stage.waits[j]],
                        self._ref(next(ends), slot_of)) for j, rank in stage.ranks.items()]
        self.final = [((stage.d, stage.s, j), self._ref(stage.it.final_op[(stage.d, stage.s, j)], slot_of))
                      for j in stage.ranks]

    def _inside(self, op_id: int) -> bool:
        return self.first_id <= op_id < self.first_id + self.count

    def _offset(self, op_id: int) -> int:
        if not self._inside(op_id):
            raise _NotTemplate
        return op_id - self.first_id

    def _ref(self, op_id: int, slot_of: dict[int, int]) -> int:
        """An id of the unit as an index into its ids: first those it
        allocates (by offset), then those it found (by slot)."""
        if op_id is not None and self._inside(op_id):
            return op_id - self.first_id
        if op_id not in slot_of:
            raise _NotTemplate
        return self.count + slot_of[op_id]

    def _pattern(self, op: Op, slot_of: dict[int, int]) -> tuple:
        """(id ref, deps as refs, name after the unit's prefix, then for an op
        without rare fields its fields that stay (``plain_op``'s order) and
        None, else None and its fields by name)."""
        if not op.name.startswith(self.prefix) or op.microbatch != self.m:
            raise _NotTemplate
        act = _tensors(self.m, self.c)
        if any(t not in act for t in op.frees) or (op.tensor is not None and op.tensor not in act):
            raise _NotTemplate
        deps = [self._ref(d, slot_of) for d in op.deps]
        # the deps from the unit's ids: a tuple of two or more by one itemgetter (a fifth of a list comprehension's
        # time), else one index or none
        refs = (self._ref(op.id, slot_of), itemgetter(*deps) if len(deps) > 1 else None, deps[0] if deps else None,
                op.name[len(self.prefix):])
        if type(op) is Op:
            return refs + ((op.op, op.flops, op.bytes_read, op.bytes_written, op.stream, op.dtype, op.layer, op.rank,
                            op.duration_s, op.group, op.mirror_groups, op.algorithm, op.stage, op.chunk, op.phase),
                           None)
        return refs + (None, op.fields())

    def _found(self, stage: Stage, m: int) -> tuple[list, list] | None:
        """Unit ``m``'s found ids by slot and its reservation keys, None if it
        does not start as the recorded unit did."""
        shape, found = _start(stage)
        if shape != self.shape:
            return None
        reserved, keys = stage.bld.reserved, []
        for key, slot, _ in self.reserves:
            key = (key[0], m) + key[2:]
            if (key in reserved) != (slot is not None):
                return None
            keys.append(key)
            if slot is not None:
                found.append(reserved[key])
        known = [x for x in found if x is not None]
        if len(set(known)) != len(known) or (known and max(known) >= stage.bld.next_id):
            return None
        return found, keys

    def replay(self, stage: Stage, m: int) -> bool:
        """Append unit ``m``'s ops and leave the builder and stage as the
        emitters would; False (nothing done) if it does not start as this one."""
        bld = stage.bld
        started = self._found(stage, m)
        if started is None:
            return False
        found, keys = started
        base = bld.next_id
        # the unit's ids by ``_ref`` index; one int object per id, shared by its op and the deps on it
        ids = list(range(base, base + self.count)) + found
        prefix, rename = stage.prefix, dict(zip(_tensors(self.m, self.c), _tensors(m, self.c)))
        append = bld.ops.append
        for at, many, one, suffix, same, fields in self.ops:
            op_deps = many(ids) if many is not None else () if one is None else (ids[one],)
            if same is not None:
                append(plain_op(ids[at], prefix + suffix, op_deps, m, *same))
            else:
                append(Op(**{**fields, "id": ids[at], "name": prefix + suffix, "deps": op_deps, "microbatch": m,
                             "tensor": rename.get(fields["tensor"]),
                             "frees": tuple(rename[t] for t in fields["frees"])}))
        bld.next_id = base + self.count
        for key, (_, slot, offset) in zip(keys, self.reserves):
            if slot is None:
                bld.reserved[key] = ids[offset]
        for value in self.flops:
            bld.hardware_flops += value
        self._leave(stage, ids)
        return True

    def _leave(self, stage: Stage, ids: list[int]) -> None:
        """Each rank's waits and last compute op as the unit left them, and its final op."""
        waits, last, final = stage.waits, stage.bld.last_compute, stage.it.final_op
        for j, rank, pending, previous in self.leaves:
            waits[j] = [ids[ref] for ref in pending]
            last[rank] = ids[previous]
        for key, ref in self.final:
            final[key] = ids[ref]
