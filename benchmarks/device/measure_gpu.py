"""Measure the kernel figures accsim's device model is calibrated and checked against, on one NVIDIA GPU.

Not part of accsim (torch is never a runtime dependency): a measurement script for a machine with a
CUDA GPU and PyTorch. It writes one JSON file of raw figures; ``benchmarks/device/README.md`` says
how they entered the validation set (sim/validation/groups/*_h200.py) and the device files.

    python3 benchmarks/device/measure_gpu.py --out measurements.json

What it measures (kernel times are CUPTI durations from PyTorch's profiler after warm-up, the mean of 20 calls,
inputs rotated over several buffers so that small problems are not served from L2, random data,
never zeros):
- ceilings: device-to-device copy bandwidth, an 8192^3 bf16 GEMM;
- sustained power: nvidia-smi sampled every 100 ms for the whole run, and 6 s each of back-to-back
  bf16 GEMMs, fp8 GEMMs and copies;
- bf16 GEMM curve: squares 256..16384, the tensor-parallel shapes of GPT-3 175B and a 22B GPT on
  8-way TP (forward, input-gradient and weight-gradient layouts, micro-batch 1/2/4), batched
  attention-score GEMMs, skinny and decode shapes;
- fp8 (e4m3) GEMMs through torch._scaled_mm;
- memory-bound kernels: copy, LayerNorm forward/backward, GeLU (tanh) forward/backward, dropout,
  residual add, masked softmax, fused AdamW;
- FlashAttention through scaled_dot_product_attention (flash back end), forward and backward;
- launch overhead: back-to-back tiny kernels, eager and replayed from a CUDA graph;
- whole transformer layers (one TP rank's shapes, no communication), forward + backward, with a
  per-kernel profile, so the sum of per-kernel predictions can be compared with a real layer.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

DEV = "cuda"
RESULTS: dict = {"sections": {}, "errors": {}}
OUT_PATH = "measurements.json"


def save() -> None:
    tmp = OUT_PATH + ".tmp"
    with open(tmp, "w") as f:
        json.dump(RESULTS, f, indent=1)
    os.replace(tmp, OUT_PATH)


def section(name):
    def wrap(fn):
        @functools.wraps(fn)
        def run(*a, **kw):
            t0 = time.time()
            try:
                RESULTS["sections"][name] = fn(*a, **kw)
            except Exception as exc:  # record and go on: one broken section must not lose the rest
                RESULTS["errors"][name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                print(f"[{name}] FAILED: {RESULTS['errors'][name]}", flush=True)
            print(f"[{name}] {time.time() - t0:.1f} s", flush=True)
            save()
        return run
    return wrap


def time_fn(fn, min_reps: int = 10, min_total_s: float = 0.05, warmup: int = 3) -> float:
    """Median seconds of fn() over repeats, timed with CUDA events around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    one = max(time.perf_counter() - t0, 1e-6)
    reps = max(min_reps, min(200, int(min_total_s / one)))
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def kernel_time(fn, reps: int = 20, warmup: int = 3) -> float:
    """Mean GPU kernel seconds per call of fn(), summed over the kernels it launches, read from the
    CUDA activity trace (CUPTI) of ``reps`` calls: launch gaps and host overhead are excluded, which
    is what a kernel model predicts."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()

    def many():
        for _ in range(reps):
            fn()
    prof = profile_kernels(many, "/tmp/kernel_time.json")
    return prof["busy_us"] / 1e6 / reps


def n_buffers(nbytes: float, l2_bytes: float = 60e6) -> int:
    """How many input sets to rotate so that their total exceeds 3x the L2."""
    return max(1, min(64, math.ceil(3 * l2_bytes / max(nbytes, 1.0))))


def rotating(make, nbytes: float):
    sets = [make() for _ in range(n_buffers(nbytes))]
    state = {"i": 0}

    def nxt():
        state["i"] = (state["i"] + 1) % len(sets)
        return sets[state["i"]]
    return nxt


@section("device")
def device_info():
    p = torch.cuda.get_device_properties(0)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit,"
                          "memory.total", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    return {"name": p.name, "sms": p.multi_processor_count, "total_memory": p.total_memory,
            "l2_bytes": getattr(p, "L2_cache_size", None), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cublas_lt": True, "nvidia_smi": smi,
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


@section("copy_bandwidth")
def copy_bandwidth():
    out = []
    for nbytes in (64 << 20, 256 << 20, 1 << 30, 4 << 30):
        n = nbytes // 2
        src = torch.randn(n, device=DEV, dtype=torch.bfloat16)
        dst = torch.empty_like(src)
        t = time_fn(lambda: dst.copy_(src), min_reps=20)
        out.append({"bytes": nbytes, "s": t, "bytes_per_s_read_plus_write": 2 * nbytes / t})
        del src, dst
    return out


def gemm_case(m, n, k, layout="nn", batch=1, dtype=torch.bfloat16):
    """C = A @ B with A (m,k), B (k,n); layout 'tn' makes A a transposed view (weight-gradient style:
    dY^T @ X), 'nt' makes B a transposed view (input-gradient: dY @ W with W stored (n_out, k))."""
    bytes_ = 2 * batch * (m * k + k * n + m * n)

    def make():
        if layout == "tn":
            a = torch.randn(batch, k, m, device=DEV, dtype=dtype).transpose(-1, -2)
        else:
            a = torch.randn(batch, m, k, device=DEV, dtype=dtype)
        if layout == "nt":
            b = torch.randn(batch, n, k, device=DEV, dtype=dtype).transpose(-1, -2)
        else:
            b = torch.randn(batch, k, n, device=DEV, dtype=dtype)
        if batch == 1:
            a, b = a[0], b[0]
        return a, b
    nxt = rotating(make, bytes_)

    def run():
        a, b = nxt()
        return torch.matmul(a, b)
    t = kernel_time(run)
    flops = 2.0 * batch * m * n * k
    return {"m": m, "n": n, "k": k, "batch": batch, "layout": layout, "s": t, "tflops": flops / t / 1e12}


def tp_shapes(h, heads, ffn, tp, tokens):
    """The GEMMs of one TP rank of a GPT layer: forward, input gradient (dgrad), weight gradient."""
    hd = h // heads
    qkv, proj_in, fc1 = 3 * h // tp, h // tp, ffn // tp
    fwd = [("qkv", tokens, qkv, h), ("proj", tokens, h, proj_in), ("fc1", tokens, fc1, h), ("fc2", tokens, h, fc1)]
    dgrad = [("qkv_dgrad", tokens, h, qkv), ("proj_dgrad", tokens, proj_in, h), ("fc1_dgrad", tokens, h, fc1),
             ("fc2_dgrad", tokens, fc1, h)]
    wgrad = [("qkv_wgrad", qkv, h, tokens), ("proj_wgrad", h, proj_in, tokens), ("fc1_wgrad", fc1, h, tokens),
             ("fc2_wgrad", h, fc1, tokens)]
    return ([(nm, m, n, k, "nn") for nm, m, n, k in fwd] + [(nm, m, n, k, "nt") for nm, m, n, k in dgrad]
            + [(nm, m, n, k, "tn") for nm, m, n, k in wgrad]), hd


@section("gemm_bf16")
def gemm_bf16():
    out = []
    for s in (256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384):
        out.append({"tag": "square", **gemm_case(s, s, s)})
    for label, h, heads, ffn in (("gpt175b_tp8", 12288, 96, 49152), ("gpt22b_tp8", 6144, 64, 24576)):
        for mbs in (1, 2, 4):
            shapes, hd = tp_shapes(h, heads, ffn, 8, 2048 * mbs)
            for nm, m, n, k, lay in shapes:
                out.append({"tag": f"{label}_mbs{mbs}_{nm}", **gemm_case(m, n, k, lay)})
    for heads_b in (12, 48):   # materialized attention: scores (s x s x d) and values (s x d x s), batched
        out.append({"tag": f"bmm_scores_b{heads_b}", **gemm_case(2048, 2048, 128, "nt", batch=heads_b)})
        out.append({"tag": f"bmm_values_b{heads_b}", **gemm_case(2048, 128, 2048, "nn", batch=heads_b)})
    for m in (1, 8, 64, 256):
        out.append({"tag": f"decode_m{m}", **gemm_case(m, 8192, 8192, "nt")})
    out.append({"tag": "skinny", **gemm_case(802816, 192, 768)})
    out.append({"tag": "azure_1024x2145x1024", **gemm_case(1024, 2145, 1024)})
    return out


@section("gemm_fp8")
def gemm_fp8():
    out = []
    one = torch.tensor(1.0, device=DEV)
    for m, n, k in ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192),
                    (16384, 16384, 16384), (2048, 4608, 12288), (2048, 12288, 6144), (8192, 6144, 12288)):
        def make():
            a = torch.randn(m, k, device=DEV).to(torch.float8_e4m3fn)
            b = torch.randn(n, k, device=DEV).to(torch.float8_e4m3fn).t()
            return a, b
        nxt = rotating(make, m * k + k * n + 2 * m * n)

        def run():
            a, b = nxt()
            return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        t = kernel_time(run)
        out.append({"m": m, "n": n, "k": k, "s": t, "tflops": 2.0 * m * n * k / t / 1e12})
    return out


@section("memory_bound")
def memory_bound():
    out = []
    for tokens, h in ((2048, 12288), (8192, 12288), (8192, 6144)):
        shape = (tokens, h)
        el = tokens * h
        xb = rotating(lambda: torch.randn(shape, device=DEV, dtype=torch.bfloat16), 2 * el)
        w = torch.ones(h, device=DEV, dtype=torch.bfloat16)
        bias = torch.zeros(h, device=DEV, dtype=torch.bfloat16)
        y = torch.randn(shape, device=DEV, dtype=torch.bfloat16)

        def rec(name, fn, bytes_):
            t = kernel_time(fn)
            out.append({"kernel": name, "tokens": tokens, "hidden": h, "bytes": bytes_, "s": t,
                        "bytes_per_s": bytes_ / t})
        rec("copy", lambda: xb().clone(), 4 * el)
        rec("add", lambda: xb() + y, 6 * el)
        rec("layernorm_fwd", lambda: F.layer_norm(xb(), (h,), w, bias, 1e-5), 4 * el)
        rec("gelu_tanh_fwd", lambda: F.gelu(xb(), approximate="tanh"), 4 * el)
        rec("dropout_fwd", lambda: F.dropout(xb(), 0.1, training=True), 4 * el)
        # backward kernels: build the graph once per buffer, time only the backward
        xs = [torch.randn(shape, device=DEV, dtype=torch.bfloat16, requires_grad=True) for _ in range(n_buffers(2 * el))]
        wg = torch.ones(h, device=DEV, dtype=torch.bfloat16, requires_grad=True)
        bg = torch.zeros(h, device=DEV, dtype=torch.bfloat16, requires_grad=True)
        gy = torch.randn(shape, device=DEV, dtype=torch.bfloat16)
        for name, f, nbytes in (("layernorm_bwd", lambda x: F.layer_norm(x, (h,), wg, bg, 1e-5), 6 * el),
                                ("gelu_tanh_bwd", lambda x: F.gelu(x, approximate="tanh"), 6 * el)):
            state = {"i": 0}

            def nxt_x():
                state["i"] = (state["i"] + 1) % len(xs)
                return xs[state["i"]]

            def fb():
                x = nxt_x()
                torch.autograd.backward(f(x), gy)
                x.grad = wg.grad = bg.grad = None
            t = kernel_time(fb) - kernel_time(lambda: f(nxt_x()))
            out.append({"kernel": name, "tokens": tokens, "hidden": h, "bytes": nbytes, "s": t,
                        "bytes_per_s": nbytes / t})
        del xs
    # masked softmax over materialized scores (b*heads, s, s), bf16
    for bh in (12, 48):
        s = 2048
        el = bh * s * s
        sc = rotating(lambda: torch.randn(bh, s, s, device=DEV, dtype=torch.bfloat16), 2 * el)
        mask = torch.ones(s, s, device=DEV, dtype=torch.bool).triu(1)
        t = kernel_time(lambda: torch.softmax(sc().masked_fill(mask, -10000.0), dim=-1))
        out.append({"kernel": "masked_fill+softmax", "elements": el, "bytes": 8 * el, "s": t, "bytes_per_s": 8 * el / t})
        t = kernel_time(lambda: torch.softmax(sc(), dim=-1))
        out.append({"kernel": "softmax", "elements": el, "bytes": 4 * el, "s": t, "bytes_per_s": 4 * el / t})
    # fused AdamW over fp32 parameters: reads p, g, m, v, writes p, m, v = 28 B per parameter
    for n in (64 << 20, 256 << 20):
        p = torch.nn.Parameter(torch.randn(n, device=DEV))
        p.grad = torch.randn(n, device=DEV)
        opt = torch.optim.AdamW([p], lr=1e-4, fused=True)
        t = kernel_time(opt.step, reps=10)
        out.append({"kernel": "adamw_fused_fp32", "params": n, "bytes": 28 * n, "s": t, "bytes_per_s": 28 * n / t})
        del p, opt
    return out


@section("flash_attention")
def flash_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    out = []
    for b, heads, s, d, causal in ((1, 12, 2048, 128, True), (4, 12, 2048, 128, True), (1, 8, 2048, 128, True),
                                   (2, 32, 4096, 128, True), (2, 32, 4096, 128, False), (1, 16, 8192, 128, True),
                                   (8, 16, 2048, 64, True)):
        shape = (b, heads, s, d)
        qkv = [torch.randn(shape, device=DEV, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)]
        go = torch.randn(shape, device=DEV, dtype=torch.bfloat16)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            fwd = lambda: F.scaled_dot_product_attention(*qkv, is_causal=causal)   # noqa: E731
            t_f = kernel_time(fwd)

            def fb():
                o = fwd()
                o.backward(go)
                for t in qkv:
                    t.grad = None
            t_fb = kernel_time(fb)
        flops_f = 4.0 * b * heads * s * s * d * (0.5 if causal else 1.0)
        out.append({"b": b, "heads": heads, "s": s, "d": d, "causal": causal, "fwd_s": t_f, "fwd_bwd_s": t_fb,
                    "bwd_s": t_fb - t_f, "fwd_tflops": flops_f / t_f / 1e12,
                    "bwd_tflops": 2.5 * flops_f / max(t_fb - t_f, 1e-9) / 1e12})
        del qkv
    return out


@section("launch")
def launch():
    x = torch.zeros(1, device=DEV)
    n = 2000

    def many():
        for _ in range(n):
            x.add_(1.0)
    eager = time_fn(many, min_reps=5) / n
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        many()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        many()
    graph = time_fn(g.replay, min_reps=5) / n
    a = torch.randn(64, 64, device=DEV, dtype=torch.bfloat16)
    b = torch.randn(64, 64, device=DEV, dtype=torch.bfloat16)
    c = torch.empty(64, 64, device=DEV, dtype=torch.bfloat16)

    def gemms():
        for _ in range(500):
            torch.matmul(a, b, out=c)
    eager_gemm = time_fn(gemms, min_reps=5) / 500
    g2 = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s):
        gemms()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g2):
        gemms()
    graph_gemm = time_fn(g2.replay, min_reps=5) / 500
    return {"tiny_add_eager_s": eager, "tiny_add_graph_s": graph, "gemm64_eager_s": eager_gemm,
            "gemm64_graph_s": graph_gemm}


@section("gemm_data")
def gemm_data():
    """Data dependence of a large GEMM (power): unit-normal inputs against weight-like magnitudes."""
    out = []
    m = 8192
    for label, scale in (("randn", 1.0), ("randn*0.02", 0.02)):
        a = torch.randn(m, m, device=DEV, dtype=torch.bfloat16) * scale
        b = torch.randn(m, m, device=DEV, dtype=torch.bfloat16) * scale
        t = kernel_time(lambda: torch.matmul(a, b), reps=40)
        out.append({"data": label, "m": m, "s": t, "tflops": 2.0 * m ** 3 / t / 1e12})
    return out


@section("sustained")
def sustained():
    """Throughput of back-to-back work for 6 s each (bf16 GEMM, fp8 GEMM, HBM copy), with wall-clock
    marks so the nvidia-smi samples (power, SM clock) of each phase can be read off the log."""
    out = []
    m = 8192
    a = torch.randn(m, m, device=DEV, dtype=torch.bfloat16)
    b = torch.randn(m, m, device=DEV, dtype=torch.bfloat16)
    a8 = torch.randn(m, m, device=DEV).to(torch.float8_e4m3fn)
    b8 = torch.randn(m, m, device=DEV).to(torch.float8_e4m3fn).t()
    one = torch.tensor(1.0, device=DEV)
    src = torch.randn(1 << 30, device=DEV, dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    phases = (("gemm_bf16_8192", lambda: torch.matmul(a, b), 2.0 * m ** 3, 0.0),
              ("gemm_fp8_8192", lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
               2.0 * m ** 3, 0.0),
              ("copy_2GiB", lambda: dst.copy_(src), 0.0, 4.0 * (1 << 30)))
    for name, fn, flops, nbytes in phases:
        start = time.time()
        windows = []
        while time.time() < start + 6.0:
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for _ in range(20):
                fn()
            e1.record()
            e1.synchronize()
            windows.append(e0.elapsed_time(e1) / 1e3 / 20)
        late = sorted(windows[len(windows) // 2:])
        t = late[len(late) // 2]
        out.append({"phase": name, "start": start, "end": time.time(), "s_per_call_late_median": t,
                    "tflops": flops / t / 1e12, "bytes_per_s": nbytes / t, "windows": len(windows)})
        time.sleep(1.0)
    return out


class Layer(torch.nn.Module):
    """One tensor-parallel rank of a GPT layer (Megatron-LM order, [s, b, h] activations, no communication)."""

    def __init__(self, h, heads, ffn, tp, attention, dropout=0.1):
        super().__init__()
        self.hd = h // heads
        self.heads = heads // tp
        self.attention, self.p = attention, dropout
        kw = {"device": DEV, "dtype": torch.bfloat16}
        self.ln1 = torch.nn.LayerNorm(h, **kw)
        self.qkv = torch.nn.Linear(h, 3 * h // tp, **kw)
        self.proj = torch.nn.Linear(h // tp, h, **kw)
        self.ln2 = torch.nn.LayerNorm(h, **kw)
        self.fc1 = torch.nn.Linear(h, ffn // tp, **kw)
        self.fc2 = torch.nn.Linear(ffn // tp, h, **kw)

    def core(self, q, k, v):
        s = q.shape[2]
        if self.attention == "flash":
            from torch.nn.attention import SDPBackend, sdpa_kernel
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.p)
        bh = q.shape[0] * q.shape[1]
        qf, kf, vf = (t.reshape(bh, s, self.hd) for t in (q, k, v))
        scores = torch.baddbmm(torch.empty(bh, s, s, device=DEV, dtype=q.dtype), qf, kf.transpose(1, 2),
                               beta=0.0, alpha=1.0 / math.sqrt(self.hd))
        if getattr(self, "mask", None) is None or self.mask.shape[0] != s:
            self.mask = torch.ones(s, s, device=DEV, dtype=torch.bool).triu(1)
        mask = self.mask
        probs = F.dropout(torch.softmax(scores.masked_fill(mask, -10000.0), dim=-1), self.p, training=True)
        return torch.bmm(probs, vf).view(q.shape)

    def forward(self, x):
        s, b, _ = x.shape
        qkv = self.qkv(self.ln1(x)).view(s, b, self.heads, 3, self.hd)
        q, k, v = (qkv[..., i, :].permute(1, 2, 0, 3).contiguous() for i in range(3))
        ctx = self.core(q, k, v).permute(2, 0, 1, 3).reshape(s, b, self.heads * self.hd)
        x = x + F.dropout(self.proj(ctx), self.p, training=True)
        y = self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))
        return x + F.dropout(y, self.p, training=True)


def profile_kernels(fn, path):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    prof.export_chrome_trace(path)
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    ks = sorted((e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")), key=lambda e: e["ts"])
    if not ks:
        return {"kernels": [], "busy_us": 0.0, "span_us": 0.0}
    busy = sum(e["dur"] for e in ks)
    span = ks[-1]["ts"] + ks[-1]["dur"] - ks[0]["ts"]
    return {"kernels": [[e["name"][:160], round(e["dur"], 3)] for e in ks], "busy_us": busy, "span_us": span}


@section("layers")
def layers():
    out = []
    configs = (("gpt175b_tp8", 12288, 96, 49152, 1, "materialized"), ("gpt175b_tp8", 12288, 96, 49152, 1, "flash"),
               ("gpt175b_tp8", 12288, 96, 49152, 2, "flash"), ("gpt22b_tp8", 6144, 64, 24576, 4, "materialized"),
               ("gpt22b_tp8", 6144, 64, 24576, 4, "flash"), ("gpt22b_tp8", 6144, 64, 24576, 1, "flash"))
    for label, h, heads, ffn, mbs, attn in configs:
        torch.manual_seed(0)
        layer = Layer(h, heads, ffn, 8, attn)
        x = torch.randn(2048, mbs, h, device=DEV, dtype=torch.bfloat16, requires_grad=True)
        gy = torch.randn_like(x)
        fwd = lambda: layer(x)   # noqa: E731

        def step():
            layer(x).backward(gy)
            layer.zero_grad(set_to_none=True)
            x.grad = None
        t_f = time_fn(fwd, min_reps=10)
        t_fb = time_fn(step, min_reps=10)
        rec = {"model": label, "hidden": h, "heads": heads, "ffn": ffn, "tp": 8, "microbatch": mbs, "seq": 2048,
               "attention": attn, "dropout": 0.1, "fwd_s": t_f, "fwd_bwd_s": t_fb}
        rec["profile_fwd_bwd"] = profile_kernels(step, f"/tmp/prof_{label}_{mbs}_{attn}.json")
        rec["profile_fwd"] = profile_kernels(fwd, f"/tmp/profF_{label}_{mbs}_{attn}.json")
        out.append(rec)
        del layer, x, gy
        torch.cuda.empty_cache()
    return out


def main() -> int:
    global OUT_PATH
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="measurements.json")
    ap.add_argument("--smi-log", default=None, help="CSV of nvidia-smi samples every 100 ms")
    ap.add_argument("--only", default="device_info,copy_bandwidth,gemm_data,gemm_bf16,gemm_fp8,memory_bound,"
                    "flash_attention,launch,layers,sustained", help="comma-separated sections, in order")
    args = ap.parse_args()
    OUT_PATH = args.out
    sampler = None
    if args.smi_log:
        fields = "timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu"
        sampler = subprocess.Popen(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits",
                                    "-lms", "100"], stdout=open(args.smi_log, "w"), stderr=subprocess.DEVNULL)
    torch.backends.cuda.matmul.allow_tf32 = False
    t0 = time.time()
    steps = {f.__name__: f for f in (device_info, copy_bandwidth, gemm_data, gemm_bf16, gemm_fp8, memory_bound,
                                     flash_attention, launch, layers, sustained)}
    for step in [steps[n] for n in args.only.split(",")]:
        step()
        RESULTS.setdefault("marks", []).append([step.__name__, time.time()])
        print(f"elapsed {time.time() - t0:.0f} s", flush=True)
    if sampler:
        sampler.terminate()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
