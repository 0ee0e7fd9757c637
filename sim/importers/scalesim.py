"""SCALE-Sim topology files (CSV) as accsim traces.

SCALE-Sim v2/v3 (Samajdar et al., ISPASS 2020; scalesim.topology_utils)
reads two layouts, both with a header row and a trailing comma per row:

- convolution: ``Layer name, IFMAP Height, IFMAP Width, Filter Height,
  Filter Width, Channels, Num Filter, Strides,`` (v3 may add a sparsity
  ``N:M`` column). The ifmap is already padded. A layer whose name contains
  ``DP`` is depthwise: SCALE-Sim runs it as one single-channel layer per
  channel, which is a ``conv2d`` with ``groups`` = channels and
  channels x filters output channels here;
- GEMM (``-i gemm``): ``Layer, M, N, K,`` for C[M,N] = A[M,K] B[K,N].

Each row becomes one op on stream 0, in file order, each depending on the
previous one (layers run one after another, as SCALE-Sim simulates them):
a ``conv2d`` (priced as its im2col GEMM M = output pixels x images, N =
filters, K = filter h x w x channels, sim.workload.conv) or a ``gemm``.
FLOPs are 2 x MACs; bytes read are the ifmap and the filters, bytes written
the ofmap, at ``dtype``'s width. The layout is recognised from the header
(M, N, K columns: GEMM) unless ``layout`` says which.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sim.hardware.specs import DTYPE_BYTES
from sim.importers import TraceImportError
from sim.workload.conv import conv2d_gemm_shape, output_hw
from sim.workload.trace import Op

CONV_COLUMNS = ("IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
                "Num Filter", "Strides")
GEMM_COLUMNS = ("M", "N", "K")
LAYOUTS = ("auto", "conv", "gemm")


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of the non-blank rows, trailing empty cells dropped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceImportError(f"{path}: cannot read topology file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise TraceImportError(f"{path}: not a text CSV file (expected a SCALE-Sim topology)") from None
    rows = []
    for number, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in cells]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            rows.append((number, cells))
    if not rows:
        raise TraceImportError(f"{path}: empty topology file; expected a header row and one row per layer")
    header = rows.pop(0)[1]
    if not rows:
        raise TraceImportError(f"{path}: no layers after the header row")
    return header, rows


def _layout(header: list[str], layout: str, path: Path) -> str:
    if layout != "auto":
        return layout
    names = [h.strip().lower() for h in header[1:4]]
    if names == ["m", "n", "k"]:
        return "gemm"
    if len(header) >= 8:
        return "conv"
    raise TraceImportError(f"{path}: line 1: header {header!r} is neither a SCALE-Sim convolution "
                           f"header (name + {', '.join(CONV_COLUMNS)}) nor a GEMM header (name, M, N, K)")


def _positive(cells: list[str], index: int, column: str, where: str) -> int:
    text = cells[index]
    try:
        value = int(text)
    except ValueError:
        raise TraceImportError(f"{where}: column {column!r}: expected a positive integer, got {text!r}") from None
    if value < 1:
        raise TraceImportError(f"{where}: column {column!r}: expected a positive integer, got {value}")
    return value


def _check_sparsity(cells: list[str], index: int, where: str) -> None:
    """SCALE-Sim v3's optional N:M sparsity column: only dense (N == M) is modelled."""
    if len(cells) <= index:
        return
    parts = cells[index].split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or parts[0].strip() != parts[1].strip():
        raise TraceImportError(f"{where}: sparsity {cells[index]!r}: only dense layers (1:1) are "
                               f"modelled; expected no sparsity column or N:N")


def _conv_op(index: int, cells: list[str], where: str, images: int, dtype: str) -> Op:
    if len(cells) < 8:
        raise TraceImportError(f"{where}: expected 8 columns (layer name, {', '.join(CONV_COLUMNS)}), "
                               f"got {len(cells)}")
    h, w, r, s, c, f, stride = (_positive(cells, i, CONV_COLUMNS[i - 1], where) for i in range(1, 8))
    _check_sparsity(cells, 8, where)
    if r > h or s > w:
        raise TraceImportError(f"{where}: filter {r}x{s} is larger than the ifmap {h}x{w}")
    groups = 1
    if "DP" in cells[0]:  # SCALE-Sim's depthwise convention: one layer per channel
        groups, f = c, c * f
    m, n, k, g = conv2d_gemm_shape(h, w, r, s, c, f, stride, stride, groups, images)
    p, q = output_hw(h, w, r, s, stride, stride)
    width = DTYPE_BYTES[dtype]
    return Op(id=index, name=cells[0] or f"layer{index}", op="conv2d", flops=2.0 * m * n * k * g,
              bytes_read=float(width * (images * h * w * c + r * s * (c // groups) * f)),
              bytes_written=float(width * images * p * q * f), deps=(index - 1,) if index else (),
              batch=images, dtype=dtype, layer=index, ifmap_h=h, ifmap_w=w, filter_h=r, filter_w=s,
              channels=c, filters=f, stride_h=stride, stride_w=stride, groups=groups if groups > 1 else None)


def _gemm_op(index: int, cells: list[str], where: str, dtype: str) -> Op:
    if len(cells) < 4:
        raise TraceImportError(f"{where}: expected 4 columns (layer name, M, N, K), got {len(cells)}")
    m, n, k = (_positive(cells, i, GEMM_COLUMNS[i - 1], where) for i in range(1, 4))
    _check_sparsity(cells, 4, where)
    width = DTYPE_BYTES[dtype]
    return Op(id=index, name=cells[0] or f"layer{index}", op="gemm", flops=2.0 * m * n * k,
              bytes_read=float(width * (m * k + k * n)), bytes_written=float(width * m * n),
              deps=(index - 1,) if index else (), m=m, n=n, k=k, dtype=dtype, layer=index)


def convert(path: str | Path, layout: str = "auto", images: int = 1, dtype: str = "bf16") -> list[Op]:
    """The ops of a SCALE-Sim topology file, one per layer (see the module docstring)."""
    path = Path(path)
    if layout not in LAYOUTS:
        raise TraceImportError(f"--layout {layout!r}: expected one of {list(LAYOUTS)}")
    if dtype not in DTYPE_BYTES:
        raise TraceImportError(f"--dtype {dtype!r}: expected one of {sorted(DTYPE_BYTES)}")
    if images < 1:
        raise TraceImportError(f"--batch {images}: expected a positive number of images")
    if not path.is_file():
        raise TraceImportError(f"{path}: topology file not found")
    header, rows = _rows(path)
    kind = _layout(header, layout, path)
    ops = []
    for index, (line, cells) in enumerate(rows):
        where = f"{path}: line {line} (layer {cells[0]!r})"
        ops.append(_conv_op(index, cells, where, images, dtype) if kind == "conv"
                   else _gemm_op(index, cells, where, dtype))
    return ops
