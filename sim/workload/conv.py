"""Convolutions as GEMMs: the shape a ``conv2d`` op is priced with.

A 2-D convolution of N images (``batch``) of H x W pixels and C channels
(``ifmap_h``, ``ifmap_w``, ``channels``) with F filters of R x S
(``filters``, ``filter_h``, ``filter_w``) at strides (``stride_h``,
``stride_w``) has an output of P x Q pixels,

    P = ceil((H - R + stride_h) / stride_h),  Q = ceil((W - S + stride_w) / stride_w),

the ofmap size SCALE-Sim computes (scalesim.topology_utils.topo_calc_hyperparams;
the input is taken as already padded). Lowered to a GEMM (im2col), each
output pixel is a row of the input operand and each filter a column of the
weights:

    M = N x P x Q (output pixels),  N_gemm = F (filters),  K = R x S x C (window),

which is both SCALE-Sim's mapping of a conv layer onto a systolic array
(Samajdar et al., ISPASS 2020, Sec. III: "ofmap pixels" x "filters" with the
convolution window as the reduction; scalesim.topology_utils
.get_transformed_mnk_dimensions) and the implicit GEMM cuDNN runs on GPUs
(NVIDIA Deep Learning Performance Guide, "Convolutional Layers User's
Guide", forward propagation: M = N*P*Q, N = K filters, K = C*R*S). With
``groups`` = g the channels and filters split into g independent GEMMs of
K = R x S x C / g and F / g columns (depthwise: g = C), which is how
SCALE-Sim runs a depthwise ("DP") layer, one channel at a time.
"""

from __future__ import annotations

import math
from typing import Mapping

GEOMETRY = ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "filters")


def output_hw(ifmap_h: int, ifmap_w: int, filter_h: int, filter_w: int, stride_h: int = 1,
              stride_w: int = 1) -> tuple[int, int]:
    """Output feature map (P, Q) of an unpadded convolution (SCALE-Sim's formula)."""
    return (math.ceil((ifmap_h - filter_h + stride_h) / stride_h),
            math.ceil((ifmap_w - filter_w + stride_w) / stride_w))


def conv2d_gemm_shape(ifmap_h: int, ifmap_w: int, filter_h: int, filter_w: int, channels: int,
                      filters: int, stride_h: int = 1, stride_w: int | None = None, groups: int = 1,
                      images: int = 1) -> tuple[int, int, int, int]:
    """(M, N, K, independent GEMMs) of a convolution's im2col lowering (see the module docstring)."""
    stride_w = stride_h if stride_w is None else stride_w
    p, q = output_hw(ifmap_h, ifmap_w, filter_h, filter_w, stride_h, stride_w)
    return images * p * q, filters // groups, filter_h * filter_w * (channels // groups), groups


def check_conv2d(fields: Mapping[str, int | None]) -> str | None:
    """What is wrong with a conv2d op's geometry (None if nothing)."""
    missing = [key for key in GEOMETRY if fields.get(key) is None]
    if missing:
        return f"conv2d ops need {', '.join(repr(k) for k in missing)} (see docs/trace-format.md)"
    if any(fields.get(key) is not None for key in ("m", "n", "k")):
        return "conv2d ops take their GEMM shape from the ifmap and filter fields; drop 'm', 'n', 'k'"
    if fields["filter_h"] > fields["ifmap_h"] or fields["filter_w"] > fields["ifmap_w"]:
        return (f"filter {fields['filter_h']}x{fields['filter_w']} is larger than the ifmap "
                f"{fields['ifmap_h']}x{fields['ifmap_w']}")
    groups = fields.get("groups") or 1
    if fields["channels"] % groups or fields["filters"] % groups:
        return (f"groups {groups} must divide channels ({fields['channels']}) and filters "
                f"({fields['filters']})")
    return None


def matrix_shape(op) -> tuple[int, int, int, int] | None:
    """(M, N, K, batch) a matrix op is priced with: its ``m``, ``n``, ``k`` and
    ``batch``, or a conv2d's im2col GEMM; None for an op without a shape."""
    if op.op == "conv2d":
        return conv2d_gemm_shape(op.ifmap_h, op.ifmap_w, op.filter_h, op.filter_w, op.channels,
                                 op.filters, op.stride_h or 1, op.stride_w or op.stride_h or 1,
                                 op.groups or 1, op.batch)
    if op.m is not None and op.n is not None and op.k is not None:
        return op.m, op.n, op.k, op.batch
    return None
