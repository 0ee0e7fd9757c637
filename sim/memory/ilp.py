"""Optimal op order + tensor replacement as an integer linear program (COSMA).

Formulation after COSMA (Y. Li, A. Gupta, S. Malik, "Combined Scheduling,
Memory Allocation and Tensor Replacement for Minimizing Off-Chip Data
Accesses of DNN Accelerators", arXiv:2311.18246, 2023), time-indexed over
steps t = 0 .. T-1 (one op per step), solved with HiGHS (``highspy``):

binary variables
  s[o,t]  op o runs at step t (constants when the order is fixed)
  r[x,t]  tensor x is resident in the scratchpad during step t
  f[x,t]  x is filled (lower tier -> scratchpad) before step t
  w[x,t]  x is written back (spilled) after step t (tensors with no
          lower-tier copy only; tensors are immutable, so at most once)

constraints
  sum_t s[o,t] = 1, sum_o s[o,t] = 1            (a permutation)
  sum_t t s[b,t] >= sum_t t s[a,t] + 1          (a -> b in deps)
  r[x,t] >= s[o,t]                               (o reads or writes x)
  r[x,t] <= r[x,t-1] + f[x,t] + s[producer(x),t] (residency has a cause)
  f[x,t] <= sum_{t'<t} w[x,t']                   (refill only what was spilled)
  w[x,t] <= r[x,t],  sum_t w[x,t] <= 1
  sum_x size(x) r[x,t] <= capacity               (every step)
  sum_t w[x,t] >= 1                              (live-out tensors reach the lower tier)
objective
  minimise sum_{x,t} size(x) (f[x,t] + w[x,t])   (off-chip bytes)

COSMA also assigns addresses; this model bounds capacity, not contiguity,
so its optimum is the least traffic any allocation can reach (with
``allocation: address`` the replacement policies report what contiguity
costs them).

For graphs with more ops than ``max_ops``, ``divide_and_conquer`` cuts the
trace order into consecutive windows of at most ``max_ops`` ops and solves
each window's ILP in turn, starting from the scratchpad state the previous
window left and requiring tensors used later to stay resident or reach the
lower tier (COSMA's divide-and-conquer heuristic likewise solves subgraphs
in sequence). Whatever HiGHS returns, a plan is checked by
``sim.memory.replacement.replay`` before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sim.memory.problem import Problem, ScratchpadError
from sim.memory.replacement import EVICT, FILL, SPILL, Action, Plan


class _Model:
    """Binary variables with costs and linear rows, handed to HiGHS row-wise."""

    def __init__(self):
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.rows: list[tuple[dict[int, float], float, float]] = []

    def var(self, cost: float = 0.0, lower: float = 0.0, upper: float = 1.0) -> int:
        self.cost.append(cost)
        self.lower.append(lower)
        self.upper.append(upper)
        return len(self.cost) - 1

    def row(self, coefs: dict[int, float], lower: float, upper: float) -> None:
        self.rows.append((coefs, lower, upper))

    def solve(self, time_limit_s: float):
        """(values, optimal) or (None, False) when no solution was found."""
        import highspy
        import numpy as np

        inf = highspy.kHighsInf
        starts, index, value = [], [], []
        for coefs, _, _ in self.rows:
            starts.append(len(index))
            index.extend(coefs)
            value.extend(coefs.values())
        n = len(self.cost)
        h = _quiet_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", float(time_limit_s))
        h.setOptionValue("random_seed", 0)
        h.setOptionValue("threads", 1)
        lo = [inf * -1 if r[1] == -float("inf") else r[1] for r in self.rows]
        hi = [inf if r[2] == float("inf") else r[2] for r in self.rows]
        h.passModel(n, len(self.rows), len(index), 2, 1, 0.0,
                    np.array(self.cost, dtype=np.float64), np.array(self.lower, dtype=np.float64),
                    np.array(self.upper, dtype=np.float64), np.array(lo, dtype=np.float64),
                    np.array(hi, dtype=np.float64), np.array(starts, dtype=np.int32),
                    np.array(index, dtype=np.int32), np.array(value, dtype=np.float64),
                    np.ones(n, dtype=np.int32))
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            # Every window is feasible (the trace order with spills is a solution), so
            # "infeasible" is HiGHS's MIP presolve going wrong: seen with HiGHS 1.16 on a
            # 7-op graph whose identity order the same model accepts. Solve again
            # without presolve (tests/test_scratchpad.py keeps that graph).
            h.setOptionValue("presolve", "off")
            h.run()
            status = h.getModelStatus()
        if h.getInfo().primal_solution_status != 2:      # kSolutionStatusFeasible
            return None, False
        values = [v > 0.5 for v in h.getSolution().col_value]
        return values, status == highspy.HighsModelStatus.kOptimal


def _quiet_highs():
    """A ``highspy.Highs`` without the banner its constructor prints on the C
    stdout (file descriptor 1), which would land in accsim's own output."""
    import os
    import sys

    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class WindowState:
    """What the scratchpad holds between windows."""

    resident: dict[str, bool] = field(default_factory=dict)   # name -> dirty
    lower: set[str] = field(default_factory=set)
    filled: set[str] = field(default_factory=set)


def solve_window(problem: Problem, steps: Sequence[int], state: WindowState, later: set[str],
                 final: bool, reorder: bool, time_limit_s: float):
    """Solve one window's ILP. Returns (order, before-actions per position,
    new state, optimal). ``later``: tensors needed after this window."""
    T = len(steps)
    model = _Model()
    if reorder:
        s = {(o, t): model.var() for o in steps for t in range(T)}
        for o in steps:
            model.row({s[o, t]: 1.0 for t in range(T)}, 1, 1)
        for t in range(T):
            model.row({s[o, t]: 1.0 for o in steps}, 1, 1)
        inside = set(steps)
        for b in steps:
            for a in problem.preds[b]:
                if a in inside:
                    coefs = {s[b, t]: float(t) for t in range(T)}
                    for t in range(T):
                        coefs[s[a, t]] = coefs.get(s[a, t], 0.0) - t
                    model.row(coefs, 1, float("inf"))
    else:
        one = model.var(lower=1.0)
        s = {(o, t): one for t, o in enumerate(steps)}

    def runs(o: int, t: int) -> int | None:
        """Variable of "o runs at t" (None: it cannot, in a fixed order)."""
        if reorder or steps[t] == o:
            return s[o, t]
        return None

    names = list(dict.fromkeys([n for o in steps for n in problem.steps[o].needs] + list(state.resident)))
    users: dict[str, list[int]] = {}
    for o in steps:
        for n in problem.steps[o].needs:
            users.setdefault(n, []).append(o)
    r, f, w = {}, {}, {}
    for x in names:
        tensor = problem.tensors[x]
        size = float(tensor.size_bytes)
        has_lower = x in state.lower
        producer = tensor.producer if tensor.producer in set(steps) else None
        spill_times = range(-1 if x in state.resident else 0, T)
        for t in range(T):
            r[x, t] = model.var()
            f[x, t] = model.var(cost=size)
        if not has_lower:
            for t in spill_times:
                w[x, t] = model.var(cost=size)
        for t in range(T):
            coefs = {r[x, t]: 1.0, f[x, t]: -1.0}
            if t > 0:
                coefs[r[x, t - 1]] = -1.0
            if producer is not None and runs(producer, t) is not None:
                coefs[runs(producer, t)] = coefs.get(runs(producer, t), 0.0) - 1.0
            model.row(coefs, -float("inf"), 1.0 if (t == 0 and x in state.resident) else 0.0)
            for o in users.get(x, ()):
                var = runs(o, t)
                if var is not None:
                    model.row({r[x, t]: 1.0, var: -1.0}, 0.0, float("inf"))
            if not has_lower:
                coefs = {f[x, t]: 1.0}
                for earlier in spill_times:
                    if earlier < t:
                        coefs[w[x, earlier]] = -1.0
                model.row(coefs, -float("inf"), 0.0)
                model.row({w[x, t]: 1.0, r[x, t]: -1.0}, -float("inf"), 0.0)
        if not has_lower:
            model.row({w[x, t]: 1.0 for t in spill_times}, 0.0, 1.0)
            if final and tensor.live_out:
                model.row({w[x, t]: 1.0 for t in spill_times}, 1.0, 1.0)
            elif x in later or tensor.live_out:
                coefs = {w[x, t]: 1.0 for t in spill_times}
                coefs[r[x, T - 1]] = coefs.get(r[x, T - 1], 0.0) + 1.0
                model.row(coefs, 1.0, float("inf"))
    for t in range(T):
        model.row({r[x, t]: float(problem.size(x)) for x in names}, -float("inf"),
                  float(problem.capacity_bytes))
    values, optimal = model.solve(time_limit_s)
    if values is None:
        raise ScratchpadError(f"the ILP found no schedule for ops {problem.steps[steps[0]].op_id}.."
                              f"{problem.steps[steps[-1]].op_id} within {time_limit_s:g} s; raise "
                              f"memory.scratchpad.ilp_time_limit_s or lower ilp_max_ops")
    if reorder:
        order = [next(o for o in steps if values[s[o, t]]) for t in range(T)]
    else:
        order = list(steps)
    before = _actions(problem, order, names, values, r, state, later, final)
    return order, before, optimal


def _actions(problem: Problem, order: list[int], names: list[str], values, r, state: WindowState,
             later: set[str], final: bool) -> list[list[Action]]:
    """Turn residency r[x,t] into fills, spills and evictions (updating ``state``).

    A tensor leaves when r drops to 0: it is spilled if it has no lower-tier
    copy and is still live, else evicted for free. A fill is a rise of r
    that is not the op producing x."""
    T = len(order)
    position = {o: t for t, o in enumerate(order)}
    last_need = {}
    for x in names:
        uses = [position[o] for o in position if x in problem.steps[o].needs]
        last_need[x] = max(uses) if uses else -1
    before: list[list[Action]] = []
    for t in range(T):
        acts: list[Action] = []
        for x in names:
            here = values[r[x, t]]
            if x in state.resident and not here:
                dirty = state.resident.pop(x)
                tensor = problem.tensors[x]
                live = tensor.live_out or last_need[x] >= t or x in later
                if dirty and live:
                    acts.append(Action(SPILL, x, tensor.size_bytes, compulsory=tensor.live_out))
                    state.lower.add(x)
                else:
                    acts.append(Action(EVICT, x, 0))
        step = problem.steps[order[t]]
        for x in names:
            if values[r[x, t]] and x not in state.resident and x != step.output:
                tensor = problem.tensors[x]
                acts.append(Action(FILL, x, tensor.size_bytes,
                                   compulsory=tensor.external and x not in state.filled))
                state.filled.add(x)
                state.resident[x] = False
        if step.output and step.output not in state.resident:
            state.resident[step.output] = True
        before.append(acts)
    return before


def plan_ilp(problem: Problem, max_ops: int, divide: bool, reorder: bool = True,
             time_limit_s: float = 60.0, where: str = "memory.scratchpad") -> Plan:
    """The ILP plan of the whole problem (at most ``max_ops`` ops), else with
    ``divide`` the divide-and-conquer plan over windows of ``max_ops`` ops."""
    count = len(problem.steps)
    if count > max_ops and not divide:
        raise ScratchpadError(
            f"{where}: policy ilp: the device runs {count} ops, over ilp_max_ops {max_ops}; "
            f"raise ilp_max_ops, or set divide_and_conquer: true to solve windows of "
            f"{max_ops} ops in turn")
    policy = "ilp" if count <= max_ops else "ilp-divide"
    state = WindowState(lower={n for n, t in problem.tensors.items() if t.external})
    plan = Plan(policy, [], [], [], optimal=True)
    windows = [list(range(i, min(i + max_ops, count))) for i in range(0, count, max_ops)] or [[]]
    for number, steps in enumerate(windows):
        if not steps:
            break
        later = {n for o in range(steps[-1] + 1, count) for n in problem.steps[o].needs}
        order, before, optimal = solve_window(problem, steps, state, later,
                                              number == len(windows) - 1, reorder, time_limit_s)
        plan.order += order
        plan.before += before
        plan.drops += [[] for _ in order]
        plan.optimal = plan.optimal and optimal and len(windows) == 1
    for name, dirty in list(state.resident.items()):
        if dirty and problem.tensors[name].live_out:
            plan.final.append(Action(SPILL, name, problem.size(name), compulsory=True))
    return plan
