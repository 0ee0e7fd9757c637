"""Serving: closed forms, vLLM's KV accounting, Little's law, determinism, inputs and outputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pyarrow.ipc as ipc
import pytest
import yaml

import sim
from conftest import ROOT, gpu_spec_dict
from sim.engine.device import bind_op, isolated_seconds
from sim.hardware.specs import device_spec_from_dict
from sim.workload.trace import Op

SMALL_MODEL = {"name": "tiny", "layers": 4, "hidden": 1024, "heads": 8, "kv_heads": 4, "ffn_hidden": 2816,
               "gated_mlp": True, "seq_len": 2048, "vocab": 8000}


def read(path):
    with open(path, "rb") as fh:
        return ipc.open_file(fh).read_all()


def toy_device(tmp_path, **over) -> str:
    spec = gpu_spec_dict(**over)
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def serving_scenario(device: str, requests: dict, **serving) -> dict:
    return {"name": "t", "device": device, "model": dict(SMALL_MODEL),
            "serving": {"requests": requests, **serving}}


def offline(prompt: int, output: int, count: int = 1) -> dict:
    return {"count": count, "arrivals": {"process": "offline"}, "prompt_tokens": prompt,
            "output_tokens": output}


# ------------------------------------------------------------------ closed forms


def probe(spec):
    """What the device model charges for an empty kernel (launch overhead, if it models one)
    and the bandwidth a pure memory kernel achieves on the HBM tier."""
    def cost(nbytes):
        op = Op(id=0, name="probe", op="elementwise", flops=0.0, bytes_read=float(nbytes), bytes_written=0.0)
        return isolated_seconds(bind_op(op, spec, "probe"), spec)
    launch = cost(0)
    return launch, 1e9 / (cost(1e9) - launch)


def test_batch1_decode_time_per_token_is_weights_plus_kv_over_bandwidth(tmp_path):
    """One request alone on a GPU whose arithmetic is effectively free: every decode step
    reads the weights once and the KV cache of its context, so TPOT is
    (weights + mean KV + the small activation traffic) / bandwidth + kernels x launch."""
    huge = {"count": 4, "clock_hz": 1e9, "matrix_flops_per_clock_per_sm": {"bf16": 1e12},
            "vector_flops_per_clock_per_sm": {"bf16": 1e12}, "gemm_tiles": [[64, 64]], "max_split_k": 1}
    device = toy_device(tmp_path, sm_array=huge,
                        memory=[{"name": "hbm", "kind": "hbm", "capacity_bytes": 8e9,
                                 "bandwidth_bytes_per_s": 1e12}])
    prompt, output = 300, 101
    result = sim.run(serving_scenario(device, offline(prompt, output)))
    row = result.extra_tables["requests"].to_pylist()[0]
    m = SMALL_MODEL
    h, layers, ffn, vocab = m["hidden"], m["layers"], m["ffn_hidden"], m["vocab"]
    kv_dim = m["kv_heads"] * h // m["heads"]
    a = 2.0                                                   # bf16
    weights = a * (layers * (h * (h + 2 * kv_dim) + h * h + 2 * h * ffn + ffn * h) + vocab * h)
    contexts = np.arange(prompt + 1, prompt + output)         # keys each decode step attends to
    kv_read = a * 2 * kv_dim * layers * contexts.mean()
    kv_write = a * 2 * kv_dim * layers
    # per layer: norms (2 x 2h), residuals (2 x 3h), qkv/o/up/down activations in and out,
    # gated activation (3 ffn), attention q in and out; plus embedding (2h) and final norm (2h)
    per_layer = 4 * h + 6 * h + (h + h + 2 * kv_dim) + (h + h) + (h + 2 * ffn) + (ffn + h) + 3 * ffn + 2 * h
    activations = a * (layers * per_layer + 4 * h + h + vocab)
    spec = device_spec_from_dict(yaml.safe_load(open(device)))
    launch, bandwidth = probe(spec)
    kernels = layers * 10 + 3
    closed = (weights + kv_read + kv_write + activations) / bandwidth + kernels * launch
    assert row["tpot_s"] == pytest.approx(closed, rel=1e-3)
    # and the headline closed form (weights + KV over bandwidth) within the activations' share
    assert row["tpot_s"] == pytest.approx((weights + kv_read) / bandwidth + kernels * launch, rel=0.02)


def test_kv_capacity_in_blocks_is_vllms_formula():
    """num_gpu_blocks = floor((HBM x gpu_memory_utilization - weights - activations) / block bytes)
    per GPU (vllm/worker/worker.py determine_num_available_blocks), for Llama-2 70B at TP 8."""
    reserve = 2 * 2**30
    result = sim.run(ROOT / "scenarios/serve_llama2_70b_h100.yaml",
                     [f"serving.kv_cache.activation_reserve_bytes={reserve}", "serving.requests.count=4"])
    pool = result.summary["pools"][0]
    h, layers, kv_heads, heads, ffn, vocab, tp = 8192, 80, 8, 64, 28672, 32000, 8
    kv_dim = kv_heads * h // heads
    per_layer = (h * (h + 2 * kv_dim) + h * h + 2 * h * ffn + ffn * h) / tp + 2 * h
    weights = 2 * (layers * per_layer + 2 * vocab * h / tp + h)
    block = 16 * layers * 2 * (kv_heads // tp) * (h // heads) * 2
    assert pool["kv_block_bytes"] == block
    assert pool["weights_bytes_per_gpu"] == pytest.approx(weights)
    from sim.hardware.specs import load_device_spec
    hbm = load_device_spec("h100_sxm5_80gb").tier("hbm").capacity_bytes
    assert pool["kv_blocks"] == math.floor((hbm * 0.9 - weights - reserve) / block)
    assert pool["kv_cpu_blocks"] == (4 * 2**30) // block            # swap_space 4 GiB


def test_quantization_changes_bytes_and_capacity():
    base = sim.run(ROOT / "scenarios/serve_llama2_70b_h100.yaml", ["serving.requests.count=50"]).summary
    fp8 = sim.run(ROOT / "scenarios/serve_llama2_70b_h100.yaml",
                  ["serving.requests.count=50", "serving.quantization.weights=fp8",
                   "serving.quantization.kv_cache=fp8"]).summary
    assert fp8["pools"][0]["weights_bytes_per_gpu"] == pytest.approx(base["pools"][0]["weights_bytes_per_gpu"] / 2)
    assert fp8["pools"][0]["kv_block_bytes"] == base["pools"][0]["kv_block_bytes"] / 2
    assert fp8["pools"][0]["kv_blocks"] > 2 * base["pools"][0]["kv_blocks"]
    assert fp8["tpot_s"]["mean"] < base["tpot_s"]["mean"]          # fewer bytes per decode step
    int4 = sim.run(ROOT / "scenarios/serve_llama2_70b_h100.yaml",
                   ["serving.requests.count=50", "serving.quantization.weights=int4"]).summary
    assert int4["pools"][0]["weights_bytes_per_gpu"] == pytest.approx(base["pools"][0]["weights_bytes_per_gpu"] / 4)
    assert int4["tpot_s"]["mean"] < base["tpot_s"]["mean"]         # weight-only: w4a16 GEMMs


def test_more_bandwidth_never_slows_decode(tmp_path):
    runs = []
    for bandwidth in (1e12, 2e12, 4e12):
        device = toy_device(tmp_path, memory=[{"name": "hbm", "kind": "hbm", "capacity_bytes": 8e9,
                                               "bandwidth_bytes_per_s": bandwidth}])
        runs.append(sim.run(serving_scenario(device, offline(64, 32, 8))).summary["tpot_s"]["mean"])
    assert runs[0] >= runs[1] >= runs[2]


# ------------------------------------------------------------------ queueing


def test_littles_law_in_steady_state():
    """L = lambda W over a window in the middle of a Poisson run: the time-average number of
    requests in the system equals the arrival rate times their mean time in it."""
    result = sim.run(ROOT / "scenarios/serve_llama2_70b_h100.yaml",
                     ["serving.requests.count=1500", "serving.requests.arrivals.rate_per_s=6"])
    rows = result.extra_tables["requests"]
    arrival = rows["arrival_s"].to_numpy()
    finish = rows["finish_s"].to_numpy()
    t1, t2 = np.percentile(arrival, 30), np.percentile(arrival, 70)
    grid = np.linspace(t1, t2, 4001)
    in_system = ((arrival[None, :] <= grid[:, None]) & (finish[None, :] > grid[:, None])).sum(axis=1)
    L = in_system.mean()
    inside = (arrival >= t1) & (arrival < t2)
    lam = inside.sum() / (t2 - t1)
    W = (finish - arrival)[inside].mean()
    assert L == pytest.approx(lam * W, rel=0.1)


def test_every_policy_serves_the_same_stream(tmp_path):
    device = toy_device(tmp_path)
    requests = {"count": 60, "seed": 3, "arrivals": {"process": "poisson", "rate_per_s": 40},
                "prompt_tokens": {"distribution": "uniform", "low": 8, "high": 200},
                "output_tokens": {"distribution": "zipf", "a": 1.5, "max": 120}}
    for policy in ("static", "prefill_first", "decode_first", "chunked_prefill"):
        scenario = serving_scenario(device, requests, scheduler={"policy": policy, "max_num_seqs": 16,
                                                                 "max_batch_size": 8})
        summary = sim.run(scenario).summary
        assert summary["finished"] == 60, policy
        table = sim.run(scenario).extra_tables["requests"]
        assert (table["generated_tokens"].to_numpy() == table["output_tokens"].to_numpy()).all()


def test_preemptions_with_a_small_cache_lose_nothing(tmp_path):
    device = toy_device(tmp_path)
    for preemption in ("recompute", "swap"):
        scenario = serving_scenario(device, offline(200, 300, 24),
                                    kv_cache={"gpu_memory_utilization": 0.2, "preemption": preemption,
                                              "activation_reserve_bytes": 0, "swap_space_bytes": "1GiB"})
        result = sim.run(scenario)
        table = result.extra_tables["requests"]
        iterations = result.extra_tables["iterations"]
        assert result.summary["preemptions"] > 0, preemption
        assert result.summary["finished"] == 24
        assert (table["generated_tokens"].to_numpy() == 300).all()
        assert iterations["decode_tokens"].to_numpy().sum() + 24 + (
            result.summary["preemptions"] if preemption == "recompute" else 0) == 24 * 300
        if preemption == "swap":
            assert iterations["swap_blocks"].to_numpy().sum() > 0


def test_replicas_and_routers(tmp_path):
    device = toy_device(tmp_path)
    requests = {"count": 80, "seed": 1, "arrivals": {"process": "poisson", "rate_per_s": 50},
                "prompt_tokens": {"distribution": "lognormal", "mean": 100, "sigma": 1.0, "max": 1000},
                "output_tokens": {"distribution": "lognormal", "mean": 60, "sigma": 1.0, "max": 500}}
    for router in ("round_robin", "least_outstanding_tokens"):
        scenario = serving_scenario(device, requests, replicas=4, router=router)
        scenario["cluster"] = "switch:4"
        table = sim.run(scenario).extra_tables["requests"]
        counts = np.bincount(table["replica"].to_numpy(), minlength=4)
        assert counts.sum() == 80 and (counts > 0).all()
        if router == "round_robin":
            assert (table["replica"].to_numpy() == np.arange(80) % 4).all()


def test_tensor_and_pipeline_parallel_replica(tmp_path):
    device = toy_device(tmp_path)
    one = serving_scenario(device, offline(128, 32, 8))
    tp = dict(one, cluster="switch:2", serving={**one["serving"], "tp": 2})
    pp = dict(one, cluster="switch:2", serving={**one["serving"], "pp": 2})
    t1, t2, t3 = (sim.run(s) for s in (one, tp, pp))
    assert t2.summary["pools"][0]["kv_blocks"] > t1.summary["pools"][0]["kv_blocks"]
    assert t2.summary["tpot_s"]["mean"] < t1.summary["tpot_s"]["mean"]     # half the weights per GPU
    assert "stage1" in set(t3.timeline["unit"].to_pylist())            # two pipeline stages
    assert t3.summary["finished"] == 8


# ------------------------------------------------------------------ disaggregation and PIM


def splitwise(*sets):
    return sim.run(ROOT / "scenarios/serve_splitwise_disagg.yaml", ["serving.requests.count=120", *sets])


def test_disaggregated_kv_moves_over_the_links():
    result = splitwise("serving.disaggregation.kv_transfer=whole")
    table = result.extra_tables["requests"]
    assert result.summary["finished"] == 120
    assert (table["decode_replica"].to_numpy() == 2).all()          # the decode replica's index
    links = result.timeline.filter(np.array([d == "network" for d in result.timeline["device"].to_pylist()]))
    assert links.num_rows > 0
    prompt = table["prompt_tokens"].to_numpy()
    per_token = 2 * 80 * 8 * 128 * 2                                  # Llama-2 70B, bf16
    assert result.summary["kv_transfer_bytes"] == pytest.approx(per_token * prompt.sum())


def test_slower_links_and_whole_transfers_expose_more_kv_time():
    layerwise = splitwise()
    whole = splitwise("serving.disaggregation.kv_transfer=whole")
    slow = splitwise("serving.disaggregation.kv_transfer=whole", "cluster_options.nic_bandwidth=2e9")
    assert layerwise.summary["kv_transfer_s"]["mean"] < whole.summary["kv_transfer_s"]["mean"]
    assert whole.summary["kv_transfer_s"]["mean"] < slow.summary["kv_transfer_s"]["mean"]


def test_pim_sub_batch_interleaving_follows_the_engine():
    """Concurrent PIM (dual row buffers): the decode layer time is the NPU stream of GEMMs
    and the PIM stream of attention, overlapped as the dependencies allow."""
    from sim.serving.offload import InterleavedDecode
    from sim.serving.scenario import serving_scenario_from_dict
    from sim.serving.run import _stages
    raw = yaml.safe_load(open(ROOT / "scenarios/serve_neupims.yaml"))
    raw["serving"]["requests"]["count"] = 2
    scenario = serving_scenario_from_dict(raw, ROOT / "scenarios")
    stage = _stages(scenario, scenario.pools[0], scenario.pools[0].replicas[0], None)[0]
    context = 18 * 2048                       # a point of the price grid (no interpolation)
    concurrent = InterleavedDecode(stage, 2).cost(64, context).seconds
    one = InterleavedDecode(stage, 1).cost(64, context).seconds
    raw["device_overrides"]["pim"]["mode"] = "blocked"
    blocked_stage = _stages(serving_scenario_from_dict(raw, ROOT / "scenarios"), scenario.pools[0],
                            scenario.pools[0].replicas[0], None)[0]
    blocked = InterleavedDecode(blocked_stage, 2).cost(64, context).seconds
    assert concurrent <= blocked
    # with one sub-batch nothing overlaps: the sum of the ops' isolated times (layers x per layer)
    ops = InterleavedDecode(stage, 1).ops(64, context)
    per_two_layers = sum(isolated_seconds(bind_op(op, stage.spec, "t"), stage.spec) for op in ops)
    assert one == pytest.approx(per_two_layers * stage.layers / 2, rel=1e-9)


def test_attention_on_memory_rich_devices_holds_the_kv_cache_and_pays_the_round_trips():
    """Model-attention disaggregation: the KV cache is sized on the attention devices (vLLM's
    formula with their memory), and with one sub-batch a decode layer is its ops' isolated
    times plus the two transfers' times on the idle links."""
    from sim.engine.calendar import Environment
    from sim.hardware.specs import load_device_spec
    from sim.network.runtime import NetworkRuntime
    from sim.serving.offload import InterleavedDecode, RemoteAttention
    from sim.serving.run import _stages
    from sim.serving.scenario import serving_scenario_from_dict
    raw = yaml.safe_load(open(ROOT / "scenarios/serve_attention_offload.yaml"))
    raw["serving"]["requests"]["count"] = 30
    result = sim.run(raw)
    pool = result.summary["pools"][0]
    mi300x = load_device_spec("mi300x").tier("hbm").capacity_bytes
    block = 16 * 80 * 2 * (8 // 4) * 128 * 2
    assert pool["kv_block_bytes"] == block and pool["kv_blocks"] == math.floor(mi300x * 0.9 // block)
    assert result.summary["finished"] == 30
    scenario = serving_scenario_from_dict(raw, ROOT / "scenarios")
    plan = scenario.pools[0]
    assert plan.replicas == ((0, 1, 2, 3),) and plan.attention_ranks == ((4, 5, 6, 7),)
    stage = _stages(scenario, plan, plan.replicas[0], None)[0]
    remote = RemoteAttention(plan.attention_spec, scenario.cluster, 0, 4)
    decode = InterleavedDecode(stage, 1, remote)
    context = 18 * 2048
    ops = decode.ops(64, context)
    network = NetworkRuntime(Environment(), scenario.cluster, record=False)
    expected = 0.0
    for op in ops:
        if op.op == "sendrecv":
            expected += network.predicted_time_s(network.schedule("sendrecv", "ring", op.group, op.bytes_read))
        else:
            spec = plan.attention_spec if op.rank == 4 else stage.spec
            expected += isolated_seconds(bind_op(op, spec, "t"), spec)
    assert decode.cost(64, context).seconds == pytest.approx(expected * stage.layers / 2, rel=1e-6)


def test_a_request_rate_sweep_gives_latency_and_throughput_columns(tmp_path):
    device = toy_device(tmp_path)
    scenario = serving_scenario(device, {"count": 80, "seed": 5, "arrivals": {"process": "poisson", "rate_per_s": 1},
                                         "prompt_tokens": 64, "output_tokens": 32})
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(scenario))
    sweep = {"scenario": str(tmp_path / "serve.yaml"),
             "grid": {"serving.requests.arrivals.rate_per_s": [5, 500], "serving.scheduler.policy":
                      ["prefill_first", "chunked_prefill"]}}
    rows = sim.sweep(sweep, out=tmp_path / "sweep", workers=1, progress=False).to_pylist()
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    by = {(r["serving.requests.arrivals.rate_per_s"], r["serving.scheduler.policy"]): r for r in rows}
    for policy in ("prefill_first", "chunked_prefill"):
        slow, fast = by[(5, policy)], by[(500, policy)]
        assert fast["throughput_tokens_per_s"] > slow["throughput_tokens_per_s"]
        assert fast["ttft_p99_s"] > slow["ttft_p99_s"]                   # queueing at the higher rate
    bad = dict(sweep, grid={"serving.kv_cache.block_sise": [16]})
    with pytest.raises(sim.ScenarioError, match="unknown key 'block_sise'"):
        sim.sweep(bad, out=tmp_path / "bad", workers=1, progress=False)


# ------------------------------------------------------------------ files, CLI, outputs


def test_request_files_native_and_azure_layouts(tmp_path):
    device = toy_device(tmp_path)
    csv = tmp_path / "r.csv"
    csv.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,10,4\n0.0,20,3\n0.25,5,2\n")
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps({"arrival_s": t, "prompt_tokens": p, "output_tokens": o}) + "\n"
                             for t, p, o in ((0.5, 10, 4), (0.0, 20, 3), (0.25, 5, 2))))
    import pyarrow as pa
    import pyarrow.parquet as pq
    parquet = tmp_path / "r.parquet"
    pq.write_table(pa.table({"arrival_s": [0.5, 0.0, 0.25], "prompt_tokens": [10, 20, 5],
                             "output_tokens": [4, 3, 2]}), parquet)
    azure = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    azure.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:46.6805900,20,3\n2023-11-16 18:15:46.9305900,5,2\n"
                     "2023-11-16 18:15:47.1805900,10,4\n")
    tables = [sim.run(serving_scenario(device, {"file": str(p)})).extra_tables["requests"]
              for p in (csv, jsonl, parquet, azure)]
    for table in tables:
        assert table["arrival_s"].to_pylist() == pytest.approx([0.0, 0.25, 0.5])
        assert table["prompt_tokens"].to_pylist() == [20, 5, 10]
        assert table["status"].to_pylist() == ["finished"] * 3
    offline_table = sim.run(serving_scenario(device, {"file": str(azure), "offline": True})).extra_tables["requests"]
    assert offline_table["arrival_s"].to_pylist() == [0.0, 0.0, 0.0]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_run_writes_the_serving_tables_and_set_works(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "scenarios/serve_llama2_70b_h100.yaml", "--out", str(out),
                   "--set", "serving.requests.count=40", "--set", "serving.scheduler.policy=chunked_prefill",
                   "--perfetto")
    assert proc.returncode == 0, proc.stderr
    assert "TTFT" in proc.stdout and "chunked_prefill" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(summary[key]) == {"mean", "p50", "p90", "p99"}
    for key in ("throughput_tokens_per_s", "requests_per_s", "goodput_requests_per_s", "mbu", "mfu",
                "kv_peak_utilization"):
        assert isinstance(summary[key], float)
    requests = read(out / "requests.arrow")
    for column in ("request_id", "replica", "arrival_s", "prompt_tokens", "output_tokens", "first_token_s",
                   "finish_s", "ttft_s", "tpot_s", "e2e_s", "queue_s", "preemptions", "status"):
        assert column in requests.column_names
    iterations = read(out / "iterations.arrow")
    for column in ("replica", "start_s", "end_s", "prefill_tokens", "decode_tokens", "batch_size",
                   "kv_blocks_used"):
        assert column in iterations.column_names
    assert iterations["prefill_tokens"].to_numpy().sum() >= requests["prompt_tokens"].to_numpy().sum()
    memory = read(out / "memory.arrow")
    assert set(memory["tier"].to_pylist()) == {"kv_cache"}
    assert (out / "trace.pftrace").stat().st_size > 0
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    trace = pb.Trace()
    trace.ParseFromString((out / "trace.pftrace").read_bytes())
    names = {p.track_descriptor.name for p in trace.packet if p.HasField("track_descriptor")}
    assert "request 0" in names and "stage0" in names


def test_rerun_gives_byte_identical_arrow_files(tmp_path):
    for name in ("a", "b"):
        proc = run_cli("run", "scenarios/serve_splitwise_disagg.yaml", "--out", str(tmp_path / name),
                       "--quiet", "--set", "serving.requests.count=60")
        assert proc.returncode == 0, proc.stderr
    for table in ("requests", "iterations", "timeline", "memory"):
        assert (tmp_path / "a" / f"{table}.arrow").read_bytes() == (tmp_path / "b" / f"{table}.arrow").read_bytes()


def test_request_that_never_fits_is_rejected_with_a_reason(tmp_path):
    device = toy_device(tmp_path)
    csv = tmp_path / "r.csv"
    csv.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,4\n0,1900,100\n")
    scenario = serving_scenario(device, {"file": str(csv)},
                                kv_cache={"gpu_memory_utilization": 0.14, "activation_reserve_bytes": 0})
    table = sim.run(scenario).extra_tables["requests"]
    assert table["status"].to_pylist() == ["finished", "rejected"]
    assert "blocks" in table["reject_reason"].to_pylist()[1]
    assert table["ttft_s"].to_pylist()[1] is None


@pytest.mark.parametrize("sets, expected", [
    (["serving.slo.ttft=2"], "serving.slo.ttft: expected a time with its unit"),
    (["serving.requests.prompt_tokens=-5"], "serving.requests.prompt_tokens"),
    (["serving.requests.prompt_tokens=4000"], "more than the model's context"),
    (["serving.kv_cache.block_sise=16"], "unknown key 'block_sise'"),
    (["serving.scheduler.policy=fifo"], "serving.scheduler.policy"),
    (["serving.tp=3"], "serving.tp: 3 does not divide"),
    (["serving.replicas=2"], "the replicas need 16 devices"),
    (["serving.kv_cache.gpu_memory_utilization=0.2"], "no room for a KV cache"),
    (["serving.quantization.compute=fp8"], "bf16 weights with fp8 math is not a GEMM"),
    (["serving.attention.offload=device"], "serving.attention.device: offload: device needs"),
    (["serving.attention.sub_batches=2"], "sub-batch interleaving overlaps offloaded attention"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, sets, expected):
    out = tmp_path / "out"
    args = ["run", "scenarios/serve_llama2_70b_h100.yaml", "--out", str(out), "--quiet"]
    for item in sets:
        args += ["--set", item]
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert not out.exists()


def test_bad_request_file_rows_name_the_row(tmp_path):
    device = toy_device(tmp_path)
    for text, expected in (("arrival_s,prompt_tokens,output_tokens\n0,10,4\n0,-3,4\n", "row 2: prompt_tokens"),
                           ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,10,4\n", "row 1: TIMESTAMP"),
                           ("a,b\n1,2\n", "expected columns arrival_s")):
        path = tmp_path / "bad.csv"
        path.write_text(text)
        with pytest.raises(sim.ScenarioError, match=expected):
            sim.run(serving_scenario(device, {"file": str(path)}))
