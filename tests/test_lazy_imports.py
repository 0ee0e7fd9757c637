"""Start-up stays cheap: ``import sim``, ``accsim --help`` and ``accsim collective``
do not load the heavy libraries they do not use (issue 13). Checked through
``sys.modules`` in a fresh interpreter, never by timing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("dask", "distributed", "perfetto", "hypothesis", "pyarrow", "pandas", "polars", "scipy")


def _modules_after(code: str) -> set[str]:
    probe = "import sys\n" + code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_sim_loads_no_heavy_library():
    loaded = _modules_after("import sim")
    assert not loaded & {*HEAVY, "numpy", "networkx", "pydantic", "simpy", "yaml"}


def test_lazy_api_names_still_resolve():
    loaded = _modules_after("import sim\nassert callable(sim.run) and callable(sim.sweep)\n"
                            "assert sim.Scenario.__name__ == 'Scenario'\nassert 'load_scenario' in dir(sim)")
    assert "pydantic" in loaded          # the names really came from the simulator's modules
    with pytest.raises(AttributeError):
        import sim
        sim.no_such_name  # noqa: B018


def test_cli_parser_loads_no_heavy_library():
    loaded = _modules_after("import io, contextlib\nfrom sim.cli import main\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['--help']) == 0")
    assert not loaded & {*HEAVY, "numpy", "networkx", "pydantic", "simpy"}


@pytest.mark.parametrize("args", [["--topology", "ring:8", "--algorithm", "ring"],
                                  ["--topology", "dgx_a100"],          # benchmarks/outputs.py startup
                                  ["--topology", "switch:8", "--algorithm", "tree"],
                                  ["--topology", "tree:8"]])
def test_collective_command_loads_no_dask_perfetto_arrow_or_networkx(args):
    """Generated topologies (rings, switches, trees, an NVSwitch node on its
    rail leaves) are built and routed without networkx; nor does the command
    load the device-spec models or the other commands' modules."""
    loaded = _modules_after("import io, contextlib\nfrom sim.cli import main\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n"
                            f"    assert main(['collective', '--op', 'allreduce', '--bytes', '1MiB', *{args!r}]) == 0\n"
                            "assert 'sim.hardware.specs' not in sys.modules and 'sim.validation' not in sys.modules\n"
                            "assert 'sim.cli.run' not in sys.modules")
    assert "simpy" in loaded             # it did simulate
    assert not loaded & {*HEAVY, "networkx"}



def _collective_modules(args: list[str]) -> set[str]:
    command = ["collective", "--bytes", "1MiB", *args]
    return _modules_after("import io, contextlib\nfrom sim.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          f"    assert main({command!r}) == 0")


@pytest.mark.parametrize("args", [["--topology", "dgx_a100", "--op", "allreduce"],   # outputs.py startup
                                  ["--topology", "dgx_h100", "--op", "allgather"],
                                  ["--topology", "dgx_a100", "--op", "alltoall"],
                                  ["--topology", "ring:8", "--op", "allreduce", "--algorithm", "ring"]])
def test_collective_inside_one_node_does_not_import_numpy(args):
    """The flow model imports numpy only when flows share a link (a max-min
    recomputation, or many flows at once): one collective on one node never
    does, so the command runs without it."""
    loaded = _collective_modules(args)
    assert "simpy" in loaded and "numpy" not in loaded


def test_collective_whose_flows_share_links_imports_numpy():
    """Across two nodes the flows of a collective share links: numpy is loaded
    for the recomputation (so the check above is not vacuous)."""
    assert "numpy" in _collective_modules(["--topology", "a100_2node", "--op", "allreduce"])
