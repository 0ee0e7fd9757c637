"""Helpers for the kernel validation groups: a published kernel throughput as a Point."""

from __future__ import annotations

from sim.validation import Point


def _label(device: str) -> str:
    """A short device label for point names: ``a100_sxm4_80gb`` -> ``A100``."""
    return device.split("_")[0].upper()


def gemm_point(device: str, shape: tuple[int, int, int, int], dtype: str, published_tflops: float, source: str,
               role: str = "check", note: str = "") -> Point:
    """A GEMM's published TFLOP/s: ``shape`` is (batch, m, n, k)."""
    b, m, n, k = shape

    def predict() -> float:
        import sim
        return sim.kernel(device, "gemm", m=m, n=n, k=k, batch=b, dtype=dtype).flops_per_s / 1e12

    name = f"{_label(device)} {dtype} {'%dx' % b if b > 1 else ''}{m}x{n}x{k}"
    command = f"accsim kernel --device {device} --m {m} --n {n} --k {k} --dtype {dtype}" + \
        (f" --batch {b}" if b > 1 else "")
    return Point(name, published_tflops, "TFLOP/s", source, role, predict, command, note)


def calibration_points(device: str, rows) -> tuple[Point, ...]:
    """The GEMM calibration points of a device: rows of (spec key set, shape, dtype,
    published TFLOP/s, source), as sim.validation.calibrate reads them."""
    return tuple(gemm_point(device, shape, dtype, value, source, "calibration", f"sets {key}")
                 for key, shape, dtype, value, source in rows)


def attention_point(device: str, batch: int, heads: int, seq: int, head_dim: int, causal: bool, backward: bool,
                    published_tflops: float, source: str, note: str = "", dtype: str = "bf16") -> Point:
    """A fused attention kernel's published TFLOP/s (FlashAttention's FLOP count)."""

    def predict() -> float:
        import sim
        return sim.kernel(device, "attention", batch=batch, heads=heads, seq=seq, head_dim=head_dim,
                          causal=causal, backward=backward, dtype=dtype).flops_per_s / 1e12

    name = f"{_label(device)} {'bwd' if backward else 'fwd'} b{batch} h{heads} s{seq} d{head_dim}{' causal' if causal else ''}"
    command = (f"accsim kernel --device {device} --op attention --batch {batch} --heads {heads} --seq {seq} "
               f"--head-dim {head_dim}{'' if causal else ' --no-causal'}{' --backward' if backward else ''}")
    return Point(name, published_tflops, "TFLOP/s", source, "check", predict, command, note)


def copy_point(device: str, published_tb_s: float, arrays: int, source: str, role: str, note: str = "",
               array_bytes: int = 2**25 * 8) -> Point:
    """A BabelStream kernel's bandwidth: ``arrays`` arrays of ``array_bytes``
    moved (copy 2, triad 3), as a memory-bound kernel."""
    nbytes = arrays * array_bytes

    def predict() -> float:
        import sim
        r = sim.kernel(device, "pointwise", bytes=nbytes, dtype="fp32")
        return nbytes / r.seconds / 1e12

    kind = {2: "copy", 3: "triad"}.get(arrays, f"{arrays} arrays")
    return Point(f"{_label(device)} BabelStream {kind} ({arrays} x 268 MB)", published_tb_s, "TB/s", source, role, predict,
                 f"accsim kernel --device {device} --op pointwise --bytes {nbytes}", note)
