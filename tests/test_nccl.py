"""The NCCL family: NCCL's tuner, the execution model's closed forms, multi-rail
topologies, contention, and the SMs a collective holds."""

import dataclasses
import math

import pytest

import sim
from sim.engine.calendar import Environment
from sim.network import nccl
from sim.network.collectives import CollectiveError
from sim.network.nccl_schedules import legs
from sim.network.runtime import NetworkRuntime, simulate_collective, simulate_collectives
from sim.network.specs import nccl_tuning
from sim.network.topology import from_name, load_topology

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
REL = 1e-9


def ring_closed_form(cluster, op, protocol, nbytes, ranks):
    """baseLat + loops x nsteps x (hop + chunk / per-channel rate), from the
    execution parameters alone (no schedule): the rate is the channel's ceiling or
    its share of the GPU's NVLink (wire bytes), whichever is lower."""
    geom = nccl.geometry(cluster, ranks)
    ex = nccl.execution(geom, op, "nccl_ring", protocol, nbytes)
    share = geom.intra_bw / ex.channels * ex.payload_fraction
    ex = dataclasses.replace(ex, channel_rate=min(ex.channel_rate, share))
    n, steps = geom.n, nccl.nsteps(op, geom.n)
    inter = 0 if geom.n_nodes == 1 else (2 if op == "allreduce" else 1) * (geom.n_nodes - 1)
    hop = ((steps - inter) * ex.hop_intra_s + inter * ex.hop_net_s) / steps
    loop = ex.channels * n * ex.chunk_bytes
    full = math.floor(nbytes / loop)
    rest = nbytes - full * loop
    time = ex.base_s + full * steps * (hop + ex.chunk_bytes / ex.channel_rate)
    if rest:
        time += steps * (hop + rest / (ex.channels * n) / ex.channel_rate)
    return time


@pytest.mark.parametrize("protocol,nbytes", [("LL", 8), ("LL", 256 * KIB), ("LL128", 4 * MIB),
                                             ("Simple", 64 * MIB), ("Simple", 3 * GIB)])
def test_uncontended_ring_all_reduce_is_the_closed_form(protocol, nbytes):
    cluster = load_topology("dgx_a100")
    result = simulate_collective(cluster, "allreduce", "nccl_ring", nbytes, protocol=protocol)
    assert result.protocol == protocol
    assert result.time_s == pytest.approx(ring_closed_form(cluster, "allreduce", protocol, nbytes,
                                                           list(range(8))), rel=REL)


def test_ring_all_reduce_costs_latency_per_step_plus_bytes_over_bus_bandwidth():
    """One loop, uncontended: NCCL's form, baseLat + 2(p-1) x hop + bytes / busBw x 2(p-1)/p."""
    cluster = load_topology("dgx_a100")
    nbytes = 96 * MIB                      # below one loop (24 channels x 8 ranks x 2 MiB)
    geom = nccl.geometry(cluster, range(8))
    ex = nccl.execution(geom, "allreduce", "nccl_ring", "Simple", nbytes)
    bus = min(ex.channels * ex.channel_rate, geom.intra_bw)     # channels' ceiling or the NVLink
    expected = ex.base_s + 14 * ex.hop_intra_s + nbytes * 14 / 8 / bus
    result = simulate_collective(cluster, "allreduce", "nccl_ring", nbytes, protocol="Simple")
    assert result.time_s == pytest.approx(expected, rel=REL)
    # so the bus bandwidth climbs with size towards NCCL's 240 GB/s (12 x 20 GB/s NVLink3)
    assert bus == pytest.approx(240e9)
    small = simulate_collective(cluster, "allreduce", "nccl_ring", 4 * MIB, protocol="Simple")
    assert small.busbw_bytes_per_s < result.busbw_bytes_per_s < bus


def test_search_gives_ncclsearch_channels():
    """A100: 6 rings at 40 GB/s, split into 12 x 20 (24 execution channels, 'Channel 23/24'
    in NCCL's logs, nccl-tests#100); DGX H100 across nodes: 8 x 45 GB/s, kept (16 channels,
    'Channel 00/16', NVIDIA/nccl#1453); DGX A100 across nodes: 8 x 24 GB/s (192 GB/s)."""
    a100 = nccl.search(nccl.geometry(load_topology("dgx_a100"), range(8)))
    assert (a100.channels, a100.bw_intra, a100.exec_channels) == (12, 20.0, 24)
    h100 = nccl.search(nccl.geometry(load_topology("h100_64"), range(24)))
    assert (h100.channels, h100.bw_inter, h100.exec_channels) == (8, 45, 16)
    hdr = nccl.search(nccl.geometry(load_topology("a100_2node"), range(16)))
    assert (hdr.channels, hdr.bw_inter) == (8, 24)


def test_tuner_latency_and_bandwidth_are_nccls():
    """NCCL's model for 8 A100s (tuning.cc constants): Ring LL 6.6 + 14 x 0.6 us = 15.0 us,
    Ring Simple 8.4 + 14 x 3.4 = 56 us; Ring Simple algbw 240 x 8 / 14 GB/s."""
    geom = nccl.geometry(load_topology("dgx_a100"), range(8))
    assert nccl.tuner_latency_us(geom, "allreduce", "nccl_ring", "LL") == pytest.approx(15.0)
    assert nccl.tuner_latency_us(geom, "allreduce", "nccl_ring", "Simple") == pytest.approx(56.0)
    assert nccl.tuner_latency_us(geom, "allreduce", "nccl_tree", "Simple") == pytest.approx(8.4 + 2 * 7 * 4.0)
    assert nccl.tuner_algbw_gb_s(geom, "allreduce", "nccl_ring", "Simple") == pytest.approx(240 * 8 / 14)
    assert nccl.tuner_algbw_gb_s(geom, "allreduce", "nccl_ring", "LL") == pytest.approx(87.7 * 8 / 14)


def test_tuner_picks_ll_small_and_simple_large_on_8_a100():
    cluster = load_topology("dgx_a100")
    net = NetworkRuntime(Environment(), cluster)
    small = net.schedule("allreduce", "nccl", range(8), 8)
    large = net.schedule("allreduce", "nccl", range(8), GIB)
    assert (small.algorithm, small.protocol) == ("nccl_ring", "LL")
    assert (large.algorithm, large.protocol) == ("nccl_ring", "Simple")
    middle = net.schedule("allreduce", "nccl", range(8), 8 * MIB)
    assert middle.protocol == "LL128"


def test_nvls_only_where_the_nvswitch_reduces():
    h100, a100 = load_topology("dgx_h100"), load_topology("dgx_a100")
    assert simulate_collective(h100, "allreduce", "nccl", GIB).algorithm == "nvls"
    assert all(simulate_collective(a100, "allreduce", "nccl", size).algorithm != "nvls"
               for size in (MIB, GIB))
    with pytest.raises(CollectiveError, match="NVLink SHARP"):
        simulate_collective(a100, "allreduce", "nvls", GIB)
    # NVLS beats the ring on H100 at large sizes, as NCCL's maintainers report (480 vs 370 GB/s)
    nvls = simulate_collective(h100, "allreduce", "nvls", 4 * GIB).busbw_bytes_per_s
    ring = simulate_collective(h100, "allreduce", "nccl_ring", 4 * GIB).busbw_bytes_per_s
    assert nvls > 1.2 * ring


def test_nvls_closed_form():
    """Each step every GPU moves (n + 1) chunks per channel each way at nvlsEfficiency x
    (nCh - 1)/nCh of its NVLink rate: time = NVLS latency + S (n + 1) / n / rate."""
    cluster = load_topology("dgx_h100")
    nbytes = 4 * GIB
    result = simulate_collective(cluster, "allreduce", "nvls", nbytes)
    tuning = nccl_tuning()
    rate = 0.85 * 18 * 20.6e9 * 15 / 16
    expected = tuning.hop_latency["nvlink"]["nvls"]["Simple"] + nbytes * 9 / 8 / rate
    assert result.time_s == pytest.approx(expected, rel=1e-9)
    assert result.channels == 16


def test_multi_rail_bus_bandwidth_scales_with_the_nics_of_a_node():
    """Two nodes, one NIC per GPU: a ring over k GPUs per node runs k rails, so the
    inter-node bus bandwidth grows with k (8 HDR NICs ~ 8 x 24 GB/s)."""
    options = {"nvlink": "nvlink3", "nic": "ib_hdr", "nccl": {"arch": "ampere", "cpu": "amd"}}
    busbw = {}
    for k in (1, 2, 4, 8):
        cluster = from_name(f"cluster:2x{k}", options)
        busbw[k] = simulate_collective(cluster, "allreduce", "nccl_ring", 4 * GIB).busbw_bytes_per_s
    assert busbw[1] == pytest.approx(24e9, rel=0.1)
    for k in (2, 4, 8):
        assert busbw[k] == pytest.approx(k * busbw[1], rel=0.1)
    # without rails (all NICs on shared leaves), the inter-node hops still reach every NIC
    flat = from_name("cluster:2x8", {**options, "rails": False})
    assert simulate_collective(flat, "allreduce", "nccl_ring", 4 * GIB).busbw_bytes_per_s == \
        pytest.approx(busbw[8], rel=0.05)


def test_inter_node_rings_stay_on_their_rails():
    """Every network hop of a multi-node ring goes NIC -> rail leaf -> NIC of the same rail
    (no spine), except where the ring wraps across rails, which goes the PXN way."""
    cluster = load_topology("h100_64")
    net = NetworkRuntime(Environment(), cluster)
    schedule = net.schedule("allreduce", "nccl_ring", range(64), GIB, protocol="Simple")
    spine_hops = 0
    for src, dst, _ in schedule.steps[1].transfers:
        path = net._path(src, dst)
        assert not any(node.startswith("node") and node.split("/")[1].startswith("gpu")
                       for _, node in path[:-1]), "a route passes through a GPU"
        spine_hops += any(node.startswith("spine") for _, node in path)
    assert spine_hops == 0


def test_pxn_relays_through_the_peer_on_the_destinations_rail():
    cluster = load_topology("a100_2node")
    geom = nccl.geometry(cluster, range(16))
    assert legs(cluster, geom, 0, 8) == [(0, 8)]               # same rail: direct
    assert legs(cluster, geom, 0, 13) == [(0, 5), (5, 13)]     # NVLink to gpu5, then rail 5
    assert legs(cluster, geom, 0, 3) == [(0, 3)]               # same node: NVLink


def test_contention_slows_concurrent_collectives():
    """Two all-reduces on the same 8 GPUs share every NVLink: each takes about twice as
    long at a bandwidth-bound size; on disjoint nodes they do not touch."""
    cluster = load_topology("a100_2node")
    node0 = list(range(8))
    alone = simulate_collective(cluster, "allreduce", "nccl_ring", GIB, ranks=node0).time_s
    both = simulate_collectives(cluster, [("allreduce", "nccl_ring", node0, GIB)] * 2, protocol="Simple")
    for result in both:
        assert result.time_s > 1.8 * alone
    apart = simulate_collectives(cluster, [("allreduce", "nccl_ring", node0, GIB),
                                           ("allreduce", "nccl_ring", list(range(8, 16)), GIB)],
                                 protocol="Simple")
    assert all(r.time_s == pytest.approx(alone, rel=1e-9) for r in apart)


def test_more_link_bandwidth_never_slows_a_collective():
    """For a given algorithm and protocol at any size, and for NCCL's choice where bandwidth
    dominates. (NCCL's own discrete choices, its search splitting a faster NIC into more and
    slower channels and its chunk halving keyed on bytes per channel, can make its tree a few
    tens of microseconds slower at 1 MiB on the faster NIC, as they would in NCCL.)"""
    slow = from_name("cluster:2x8", {"nvlink": "nvlink3", "nic": "ib_hdr"})
    fast = from_name("cluster:2x8", {"nvlink": "nvlink3", "nic": "ib_ndr"})
    for size in (8, 64 * KIB, MIB, 64 * MIB, GIB):
        for protocol in ("LL", "LL128", "Simple"):
            assert simulate_collective(fast, "allreduce", "nccl_ring", size, protocol=protocol).time_s <= \
                simulate_collective(slow, "allreduce", "nccl_ring", size, protocol=protocol).time_s * (1 + 1e-9)
    for size in (64 * MIB, GIB, 4 * GIB):
        assert simulate_collective(fast, "allreduce", "nccl", size).time_s <= \
            simulate_collective(slow, "allreduce", "nccl", size).time_s * (1 + 1e-9)


@pytest.mark.parametrize("op", ["allreduce", "allgather", "reduce_scatter", "broadcast", "reduce",
                                "alltoall", "sendrecv", "scatter", "gather"])
@pytest.mark.parametrize("topology", ["dgx_a100", "dgx_h100", "a100_2node", "h100_2node"])
def test_every_op_runs_on_one_and_several_nodes(op, topology):
    cluster = load_topology(topology)
    ranks = [0, cluster.size - 1] if op == "sendrecv" else None
    small = simulate_collective(cluster, op, "nccl", 4 * KIB, ranks=ranks)
    large = simulate_collective(cluster, op, "nccl", 256 * MIB, ranks=ranks)
    assert 0 < small.time_s < large.time_s
    assert large.busbw_bytes_per_s > small.busbw_bytes_per_s
    assert small.channels >= 1


def test_hierarchical_all_to_all_sends_fewer_network_messages():
    cluster = load_topology("a100_2node")
    net = NetworkRuntime(Environment(), cluster)
    pairwise = net.schedule("alltoall", "nccl_p2p", range(16), 64 * MIB)
    hierarchical = net.schedule("alltoall", "nccl_hierarchical", range(16), 64 * MIB)

    def network_bytes(schedule):
        return sum(size for step in schedule.steps for a, b, size in step.transfers
                   if cluster.machine(a) != cluster.machine(b))
    # the same bytes cross the network (half of each rank's buffer), in fewer, larger messages
    assert network_bytes(pairwise) == pytest.approx(network_bytes(hierarchical))
    messages = lambda s: sum(1 for st in s.steps for a, b, _ in st.transfers if cluster.machine(a) != cluster.machine(b))
    assert messages(hierarchical) < messages(pairwise)


def test_a_1024_rank_nccl_ring_is_a_handful_of_steps():
    cluster = load_topology("a100_1024")
    result = simulate_collective(cluster, "allreduce", "nccl_ring", GIB, protocol="Simple")
    assert result.events < 20
    assert result.time_s > 0
    # NCCL picks what its model says is fastest at this scale, and it is no slower than the ring here
    tuned = simulate_collective(cluster, "allreduce", "nccl", GIB)
    assert tuned.algorithm == "nccl_tree" and tuned.time_s <= result.time_s * 1.05


def test_collective_holds_one_sm_per_channel(tmp_path):
    """An NCCL all-reduce beside a GEMM holds its channels' SMs (24 on two A100s at 1 GB),
    so a GEMM of 108 tiles runs in two waves on the 84 SMs left."""
    from sim.workload.trace import Op, write_trace
    m, n, k = 128 * 12, 128 * 9, 8192
    gemm = Op(id=1, name="gemm", op="gemm", m=m, n=n, k=k, flops=2.0 * m * n * k, bytes_read=0.0,
              bytes_written=0.0, rank=0)
    comm = Op(id=0, name="ar", op="allreduce", flops=0.0, bytes_read=1e9, bytes_written=1e9,
              group=(0, 1), rank=0, stream=1, algorithm="nccl")
    path = tmp_path / "t.jsonl"
    write_trace([comm, gemm], path)
    result = sim.run({"cluster": "dgx_a100", "trace": str(path)})
    held = next(row["units_held"] for row in result.timeline.to_pylist()
                if row["name"] == "gemm" and row["category"] == "compute")
    assert held == 108 - 24


def test_ideal_interconnect_takes_no_time():
    result = simulate_collective(from_name("ideal:8"), "allreduce", "nccl", GIB)
    assert result.time_s == 0.0


@pytest.mark.parametrize("topology", ["a100_1024", "h100_64", "tpu_v4_4x4x4", "cluster:4x8"])
def test_geometry_from_remembered_rank_links_is_the_same(topology):
    """NetworkRuntime hands geometry one dictionary of RankLinks for all its groups
    (set-up speed, issue 13): a group's geometry and search come out the same as
    from a fresh one, whatever groups were asked for before."""
    import random
    cluster = load_topology(topology) if ":" not in topology else from_name(topology)
    shared = {}
    rng = random.Random(7)
    for _ in range(40):
        ranks = rng.sample(range(cluster.size), rng.randint(1, min(cluster.size, 24)))
        try:
            fresh = nccl.geometry(cluster, ranks)
        except CollectiveError as exc:
            with pytest.raises(CollectiveError, match=str(exc)[:40]):
                nccl.geometry(cluster, ranks, shared)
            continue
        remembered = nccl.geometry(cluster, ranks, shared)
        assert remembered == fresh
        assert nccl.search(remembered) == nccl._search(fresh, nccl_tuning())


@pytest.mark.parametrize("topology", ["a100_1024", "h100_64", "a100_2node"])
def test_a_mirrored_schedule_is_the_one_built_on_the_mirror_group(topology):
    """NetworkRuntime.mirror relabels a group's schedule onto another group only
    where that is exactly what building it there gives (set-up speed, issue 13):
    on groups moved by whole machines it applies, and on arbitrary groups of the
    same size it either applies or declines."""
    import random
    cluster = load_topology(topology)
    network = NetworkRuntime(Environment(), cluster)
    rng = random.Random(11)
    machines = cluster.size // 8
    applied = 0
    for _ in range(60):
        op, algorithm = rng.choice([("allreduce", "nccl"), ("allreduce", "nccl_tree"), ("allgather", "nccl_ring"),
                                    ("sendrecv", "nccl_p2p"), ("alltoall", "nccl_p2p"),
                                    ("alltoall", "nccl_hierarchical"), ("broadcast", "nccl_ring")])
        size = 2 if op == "sendrecv" else rng.choice([2, 4, 8, 16])
        nbytes = rng.choice([0, 4096, 3 * MIB + 7, 256 * MIB])

        def on_machines():     # `size` ranks over two machines, local GPUs drawn at random (PXN relays)
            first, second = rng.sample(range(machines), 2) if machines > 1 else (0, 0)
            half = rng.sample(range(8), min(8, size - size // 2)), rng.sample(range(8), min(8, size // 2))
            return [8 * first + r for r in half[0]] + [8 * second + r for r in half[1]]
        group = on_machines()
        try:
            built = network.schedule(op, algorithm, group, nbytes)
        except CollectiveError:
            continue
        shift = 8 * rng.randrange(1, machines) if machines > 1 else 0
        for other in ([(r + shift) % cluster.size for r in group], on_machines(), on_machines()):
            moved = network.mirror(built, other)
            try:
                expected = network.schedule(op, built.algorithm, other, nbytes, protocol=built.protocol or None)
            except CollectiveError:
                assert moved is None
                continue
            if moved is not None:
                applied += 1
                assert moved == expected
    assert applied >= 10
