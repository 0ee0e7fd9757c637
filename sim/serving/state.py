"""Per-request state during a serving run, as columns (plain lists, indexed by request id).

Token accounting (the same for every scheduler):

- ``known``: tokens the request has, prompt plus generated; ``computed``:
  tokens whose K and V are in the cache;
- a request is *prefilled* once it has computed every known token and
  sampled from the last; before that it is prefilling (possibly in chunks);
- a decode step processes one token (the last sampled) and samples the
  next: ``computed``, ``known`` and ``generated`` each grow by one, so a
  prefilled request always has computed = known - 1;
- it is finished when ``generated`` reaches its output length, holding then
  prompt + output - 1 tokens of KV cache;
- preemption by recomputation drops its cache (computed = 0, not
  prefilled): it re-prefills all known tokens, prompt and generated, and
  then samples its next token, as vLLM does.
"""

from __future__ import annotations

import math

import numpy as np

from sim.serving.requests import RequestSet

WAITING, RUNNING, SWAPPED, TRANSFER, FINISHED, REJECTED = range(6)
STATUS_NAMES = {FINISHED: "finished", REJECTED: "rejected"}


class RequestState:
    """Mutable state of every request of a run."""

    def __init__(self, requests: RequestSet):
        n = len(requests)
        self.count = n
        self.arrival = requests.arrival_s.tolist()
        self.prompt = requests.prompt_tokens.tolist()
        self.output = requests.output_tokens.tolist()
        self.prefix_id = requests.prefix_id.tolist()
        self.prefix_tokens = requests.prefix_tokens.tolist()
        self.known = list(self.prompt)
        self.computed = [0] * n
        self.generated = [0] * n
        self.prefilled = [False] * n
        self.blocks = [0] * n            # private GPU blocks held
        self.shared = [0] * n            # prefix blocks used through prefix caching
        self.cpu_blocks = [0] * n        # blocks swapped out to the host
        self.status = [WAITING] * n
        self.replica = [-1] * n
        self.engine = [-1] * n
        self.decode_replica = [-1] * n
        self.scheduled_s = [math.nan] * n
        self.first_token_s = [math.nan] * n
        self.last_token_s = [math.nan] * n
        self.finish_s = [math.nan] * n
        self.itl_max_s = [0.0] * n
        self.preemptions = [0] * n
        self.prefix_hit_tokens = [0] * n
        self.kv_transfer_s = [math.nan] * n
        self.reject_reason: dict[int, str] = {}
        self.finished = 0

    def remaining_tokens(self, r: int) -> int:
        """Tokens still to process: the prefill left plus the outputs left."""
        return (self.known[r] - self.computed[r]) + (self.output[r] - self.generated[r])

    def sample(self, r: int, now: float) -> bool:
        """Request ``r`` produced a token at ``now``; True when that was its last."""
        self.generated[r] += 1
        self.known[r] += 1
        if self.generated[r] == 1:
            self.first_token_s[r] = now
        else:
            gap = now - self.last_token_s[r]
            if gap > self.itl_max_s[r]:
                self.itl_max_s[r] = gap
        self.last_token_s[r] = now
        return self.generated[r] >= self.output[r]

    def reject(self, r: int, reason: str) -> None:
        self.status[r] = REJECTED
        self.reject_reason[r] = reason

    def columns(self) -> dict[str, np.ndarray]:
        """Final per-request columns (see sim.serving.tables.REQUESTS_SCHEMA)."""
        return {"arrival": np.array(self.arrival), "prompt": np.array(self.prompt, dtype=np.int64),
                "output": np.array(self.output, dtype=np.int64),
                "generated": np.array(self.generated, dtype=np.int64),
                "replica": np.array(self.replica, dtype=np.int64),
                "decode_replica": np.array(self.decode_replica, dtype=np.int64),
                "scheduled": np.array(self.scheduled_s), "first_token": np.array(self.first_token_s),
                "finish": np.array(self.finish_s), "itl_max": np.array(self.itl_max_s),
                "preemptions": np.array(self.preemptions, dtype=np.int64),
                "prefix_hit_tokens": np.array(self.prefix_hit_tokens, dtype=np.int64),
                "kv_transfer": np.array(self.kv_transfer_s),
                "status": np.array(self.status, dtype=np.int64)}
