"""Request streams: synthetic, from a file, or offline (all at t = 0).

A request is an arrival time, a prompt length and an output length in
tokens, optionally with a shared prefix (``prefix_id``, ``prefix_tokens``:
the first tokens of its prompt, reusable through prefix caching). Streams
are columns of numpy arrays sorted by arrival (stable, so ties keep file
order); ``request_id`` is the position in that order.

Synthetic streams draw from one seeded ``numpy.random.Generator`` (PCG64)
in a fixed order (gaps, prompt lengths, output lengths, prefixes), so a
seed gives the same stream on every machine. Arrivals: Poisson (exponential
gaps of mean 1 / rate) or gamma (shape 1 / cv^2, scale cv^2 / rate: same
mean, burstier for cv > 1). Lengths: fixed, uniform, lognormal (``mean`` of
the lognormal itself, so mu = ln(mean) - sigma^2 / 2), Zipf (numpy's, exponent
a > 1), clipped to [min, max].

Files: CSV, Parquet or JSON Lines with ``arrival_s, prompt_tokens,
output_tokens`` (optional ``prefix_id``, ``prefix_tokens``), or the column
layout of the Azure LLM inference traces as published (``TIMESTAMP``, a
wall-clock time such as ``2023-11-16 18:15:46.6805900``; ``ContextTokens``;
``GeneratedTokens``; Patel et al., "Splitwise", ISCA 2024, and
github.com/Azure/AzurePublicDataset, AzureLLMInferenceDataset2023.md), whose
arrival is the time since the first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.errors import ScenarioError
from sim.serving.config import FileRequests, LengthDistribution, SyntheticRequests

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
NATIVE_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens")
MAX_TOKENS = 2**31 - 1


@dataclass(frozen=True)
class RequestSet:
    """Requests as columns, sorted by arrival; ``prefix_id`` -1 means none."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_id: np.ndarray
    prefix_tokens: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.arrival_s)


def _sorted(arrival, prompt, output, prefix_id, prefix_tokens, source) -> RequestSet:
    order = np.argsort(arrival, kind="stable")
    return RequestSet(np.ascontiguousarray(arrival[order], dtype=np.float64),
                      np.ascontiguousarray(prompt[order], dtype=np.int64),
                      np.ascontiguousarray(output[order], dtype=np.int64),
                      np.ascontiguousarray(prefix_id[order], dtype=np.int64),
                      np.ascontiguousarray(prefix_tokens[order], dtype=np.int64), source)


def sample_lengths(dist: LengthDistribution, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` token counts from ``dist`` (validated by config.check_distribution)."""
    kind = dist.distribution
    if kind == "fixed":
        values = np.full(count, float(dist.value))
    elif kind == "uniform":
        values = rng.integers(dist.low, dist.high + 1, size=count).astype(float)
    elif kind == "lognormal":
        mu = np.log(dist.mean) - dist.sigma ** 2 / 2.0
        values = rng.lognormal(mu, dist.sigma, size=count)
    else:
        values = rng.zipf(dist.a, size=count).astype(float)
    high = dist.max if dist.max is not None else MAX_TOKENS
    return np.clip(np.rint(values), dist.min, high).astype(np.int64)


def arrival_times(config: SyntheticRequests, rng: np.random.Generator) -> np.ndarray:
    """Arrival times in seconds: cumulative sums of the gaps, the first request at its first gap."""
    arrivals, count = config.arrivals, config.count
    if arrivals.process == "offline":
        return np.zeros(count)
    rate = arrivals.rate_per_s
    if arrivals.process == "poisson":
        gaps = rng.exponential(1.0 / rate, size=count)
    else:
        shape = 1.0 / arrivals.cv ** 2
        gaps = rng.gamma(shape, 1.0 / (rate * shape), size=count)
    return np.cumsum(gaps)


def synthetic(config: SyntheticRequests) -> RequestSet:
    rng = np.random.default_rng(config.seed)
    arrival = arrival_times(config, rng)
    prompt = sample_lengths(config.prompt_tokens, config.count, rng)
    output = sample_lengths(config.output_tokens, config.count, rng)
    prefix_id = np.full(config.count, -1, dtype=np.int64)
    prefix_tokens = np.zeros(config.count, dtype=np.int64)
    if config.prefix is not None:
        uses = rng.random(config.count) < config.prefix.share
        groups = rng.integers(0, config.prefix.groups, size=config.count)
        prefix_id = np.where(uses, groups, -1)
        # a prompt that uses a prefix is at least the prefix plus one token
        prompt = np.where(uses, np.maximum(prompt, config.prefix.tokens + 1), prompt)
        prefix_tokens = np.where(uses, config.prefix.tokens, 0)
    return _sorted(arrival, prompt, output, prefix_id, prefix_tokens, "synthetic")


def _file_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def _read_table(path: Path, fmt: str):
    import pyarrow as pa
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            return pq.read_table(path)
        if fmt == "jsonl":
            import pyarrow.json as pj
            return pj.read_json(path)
        import pyarrow.csv as pc
        # TIMESTAMP stays text: numpy parses its 100 ns digits exactly
        return pc.read_csv(path, convert_options=pc.ConvertOptions(
            column_types={"TIMESTAMP": pa.string()}))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as exc:
        text = " ".join(str(exc).split())
        raise ScenarioError(f"{path}: cannot read as {fmt} ({text[:200]})") from None


def _column(table, name: str, path: Path, integer: bool) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        row = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
        raise ScenarioError(f"{path}: row {row + 1}: {name} is empty")
    try:
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    except (TypeError, ValueError):
        raise ScenarioError(f"{path}: column {name}: expected numbers, got {column.type}") from None
    bad = ~np.isfinite(values)
    if integer:
        bad |= (values != np.round(values)) | (values < 0) | (values > MAX_TOKENS)
    else:
        bad |= values < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        expected = "a non-negative integer token count" if integer else "a non-negative, finite time in seconds"
        raise ScenarioError(f"{path}: row {row + 1}: {name} = {values[row]!r}; expected {expected}")
    return values.astype(np.int64) if integer else values


def _azure_arrivals(table, path: Path) -> np.ndarray:
    text = table.column("TIMESTAMP").to_pylist()
    try:
        stamps = np.array([str(t).strip().replace(" ", "T", 1) for t in text], dtype="datetime64[ns]")
    except ValueError:
        bad = next(i for i, t in enumerate(text) if not _is_timestamp(t))
        raise ScenarioError(f"{path}: row {bad + 1}: TIMESTAMP {text[bad]!r} is not a date and time "
                            f"such as 2023-11-16 18:15:46.6805900") from None
    if np.isnat(stamps).any():
        row = int(np.flatnonzero(np.isnat(stamps))[0])
        raise ScenarioError(f"{path}: row {row + 1}: TIMESTAMP is empty")
    offsets = (stamps - stamps.min()).astype(np.int64)
    return offsets.astype(np.float64) * 1e-9


def _is_timestamp(text) -> bool:
    try:
        np.datetime64(str(text).strip().replace(" ", "T", 1), "ns")
        return True
    except ValueError:
        return False


def from_file(config: FileRequests, base: Path | None) -> RequestSet:
    path = Path(config.file)
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    if not path.is_file():
        raise ScenarioError(f"serving.requests.file: {config.file!r} not found")
    table = _read_table(path, _file_format(path, config.format))
    names = set(table.column_names)
    if set(AZURE_COLUMNS) <= names:
        arrival = _azure_arrivals(table, path)
        prompt = _column(table, "ContextTokens", path, True)
        output = _column(table, "GeneratedTokens", path, True)
        source = "azure"
    elif set(NATIVE_COLUMNS) <= names:
        arrival = _column(table, "arrival_s", path, False)
        prompt = _column(table, "prompt_tokens", path, True)
        output = _column(table, "output_tokens", path, True)
        source = "file"
    else:
        raise ScenarioError(f"{path}: expected columns {', '.join(NATIVE_COLUMNS)} (or the Azure trace's "
                            f"{', '.join(AZURE_COLUMNS)}), got {', '.join(table.column_names[:8])}")
    count = len(arrival)
    if count == 0:
        raise ScenarioError(f"{path}: no requests")
    prefix_id = np.full(count, -1, dtype=np.int64)
    prefix_tokens = np.zeros(count, dtype=np.int64)
    if "prefix_id" in names:
        prefix_id = _column(table, "prefix_id", path, True)
        prefix_tokens = _column(table, "prefix_tokens", path, True) if "prefix_tokens" in names else prefix_tokens
        over = prefix_tokens >= np.maximum(prompt, 1)
        if over.any():
            row = int(np.flatnonzero(over)[0])
            raise ScenarioError(f"{path}: row {row + 1}: prefix_tokens {prefix_tokens[row]} is not "
                                f"below prompt_tokens {prompt[row]}")
    arrival = np.zeros(count) if config.offline else arrival * config.time_scale
    requests = _sorted(arrival, prompt, output, prefix_id, prefix_tokens, source)
    if config.limit is not None and config.limit < count:
        requests = RequestSet(*(getattr(requests, f)[:config.limit] for f in
                                ("arrival_s", "prompt_tokens", "output_tokens", "prefix_id",
                                 "prefix_tokens")), requests.source)
    return requests


def check_lengths(requests: RequestSet, max_model_len: int, too_long: str, where: str) -> np.ndarray:
    """Reject impossible lengths before simulating. Returns a boolean mask of
    requests too long for the model's context (prompt + output tokens above
    ``max_model_len``): an error naming the first, or, with ``too_long:
    reject``, requests recorded as ``rejected``."""
    for name in ("prompt_tokens", "output_tokens"):
        values = getattr(requests, name)
        low = values < 1
        if low.any():
            i = int(np.flatnonzero(low)[0])
            raise ScenarioError(f"{where}: request {i} has {name} = {values[i]}; expected at least 1 "
                                f"(every request has a prompt and generates at least one token)")
    long = requests.prompt_tokens + requests.output_tokens > max_model_len
    if long.any() and too_long == "error":
        i = int(np.flatnonzero(long)[0])
        raise ScenarioError(
            f"{where}: request {i} needs {requests.prompt_tokens[i]} prompt + {requests.output_tokens[i]} "
            f"output tokens, more than the model's context (model.seq_len = {max_model_len}); shorten "
            f"it, raise model.seq_len, or set serving.too_long: reject")
    return long
