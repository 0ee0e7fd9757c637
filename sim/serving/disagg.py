"""Disaggregated serving: each request's KV cache moves from a prefill to a decode replica.

Splitwise (Patel et al., ISCA 2024) and DistServe (Zhong et al., OSDI
2024) run prompts and token generation on separate pools; after its prefill
a request's KV cache (every layer, every KV head) is sent to a decode
replica, which must first find blocks for it. Each GPU of the prefill
replica sends its share (its layers' and heads' part) to a GPU of the
decode replica, as concurrent flows over the cluster's real routes
(sim.network.routing) on the links' shared bandwidth
(``VectorFluidNetwork``, max-min fair), so transfers of different
requests, and anything else on those links, slow each other down.

``whole``: the transfer starts when the prefill has finished and the decode
replica has reserved blocks. ``layerwise`` (Splitwise's layer-wise
transfer, overlapping the prompt computation): when the iteration that will
finish a request's prefill starts and a decode replica can reserve blocks at
once, all layers but the last start moving then; the last layer's share
moves once the prefill is over and the rest has arrived. (The early part
may finish before the prefill produces it when the link is faster than the
compute; only its end time matters here, which is then bounded by the
prefill.) If no decode replica has room when the iteration starts, it falls
back to ``whole``.

The decode replica admits incoming requests in arrival order with its
scheduler's watermark and ``max_num_seqs``; the prefill replica keeps the
blocks until the transfer is done (back-pressure, as DistServe's pull).
"""

from __future__ import annotations

from collections import deque

from sim.serving.kvcache import blocks_for
from sim.serving.state import RequestState


class KvTransfers:
    """Hands prefilled requests to decode replicas and moves their KV cache."""

    def __init__(self, env, network, state: RequestState, decode_replicas, router, bytes_per_token: float,
                 layers: int, mode: str, records, record_links: bool):
        self.env = env
        self.network = network
        self.state = state
        self.decode_replicas = decode_replicas
        self.router = router
        self.bytes_per_token = bytes_per_token
        self.layers = layers
        self.mode = mode
        self.records = records
        self.record_links = record_links
        self.queues: dict[int, deque] = {}      # id(engine) -> requests waiting for its blocks
        self.early: dict[int, list] = {}        # request -> [dest engine, source engine, parts left, prefill done]
        self.reserved: dict[int, int] = {}      # request -> blocks reserved on its decode engine
        self.moved_bytes = 0.0

    # ------------------------------------------------------------ choosing and reserving

    def _destination(self, r: int):
        replica = self.router.pick(self.decode_replicas, r)
        self.state.decode_replica[r] = replica.index
        replica.outstanding += self.state.output[r] - self.state.generated[r]
        return replica.engine_for()

    def _reserve(self, engine, r: int) -> bool:
        scheduler = engine.scheduler
        kv = scheduler.kv
        need = blocks_for(self.state.known[r], kv.block_size)
        if scheduler.running_count() + engine.incoming >= scheduler.limits.max_num_seqs:
            return False
        if not kv.can_allocate(need):
            return False
        kv.take(need)
        self.reserved[r] = need
        engine.incoming += 1
        return True

    # ------------------------------------------------------------ hooks called by engines

    def on_batch(self, engine, batch, start_s: float) -> None:
        """A prefill iteration starts: reserve and start the layer-wise transfer early."""
        if self.mode != "layerwise" or self.layers < 2:
            return
        state = self.state
        for r, q in batch.prefill:
            if state.computed[r] + q != state.known[r] or state.output[r] <= 1:
                continue
            dest = self._destination(r)
            if self.queues.get(id(dest)) or not self._reserve(dest, r):
                continue
            parts = [dest, engine, 1, False]
            self.early[r] = parts
            nbytes = state.known[r] * self.bytes_per_token * (self.layers - 1) / self.layers
            self._send(r, engine.replica, dest.replica, nbytes, lambda r=r: self._part_done(r))

    def on_handoff(self, engine, r: int) -> None:
        """Request ``r`` finished its prefill on ``engine``: move its KV (or the rest of it)."""
        parts = self.early.get(r)
        if parts is not None:
            parts[3] = True
            if parts[2] == 0:
                self._send_last(r)
            return
        dest = self._destination(r)
        queue = self.queues.setdefault(id(dest), deque())
        queue.append((r, engine))
        self.pump(dest)

    def pump(self, dest) -> None:
        """Start transfers to ``dest`` for queued requests while it can reserve blocks."""
        queue = self.queues.get(id(dest))
        while queue:
            r, source = queue[0]
            if not self._reserve(dest, r):
                return
            queue.popleft()
            self._send(r, source.replica, dest.replica, self.state.computed[r] * self.bytes_per_token,
                       lambda r=r, s=source, d=dest: self._arrived(r, s, d))

    def before_schedule(self, engine) -> None:
        """A decode engine about to schedule: admit transfers that now fit."""
        if self.queues.get(id(engine)):
            self.pump(engine)

    # ------------------------------------------------------------ flows

    def _part_done(self, r: int) -> None:
        parts = self.early[r]
        parts[2] = 0
        if parts[3]:
            self._send_last(r)

    def _send_last(self, r: int) -> None:
        dest, source = self.early[r][0], self.early[r][1]
        nbytes = self.state.computed[r] * self.bytes_per_token / self.layers
        self._send(r, source.replica, dest.replica, nbytes,
                   lambda: (self.early.pop(r), self._arrived(r, source, dest)))

    def _send(self, r: int, src, dst, nbytes: float, done) -> None:
        """Flows from every GPU of ``src`` to one of ``dst``; ``done()`` when all have arrived."""
        self.moved_bytes += nbytes
        senders = src.ranks
        share = nbytes / len(senders)
        left = [len(senders)]
        start = self.env.now

        def one_done(flow, links) -> None:
            if self.record_links:
                for a, b in links:
                    self.records.links.append((f"{a}->{b}", r, start, flow.end_s, share))
            left[0] -= 1
            if left[0] == 0:
                done()

        fluid = self.network.fluid
        for i, rank in enumerate(senders):
            target = dst.ranks[i % len(dst.ranks)]
            links = self.network.router.rank_path(rank, target)
            fluid.start(share, links, lambda flow, links=links: one_done(flow, links))

    def _arrived(self, r: int, source, dest) -> None:
        state = self.state
        source.scheduler.release_handoff(r)
        source.wake()
        state.blocks[r] = self.reserved.pop(r)
        state.kv_transfer_s[r] = self.env.now - state.first_token_s[r]
        dest.incoming -= 1
        state.engine[r] = dest.index
        dest.scheduler.enter_decode(r)
        dest.wake()
