"""The sweep's schedule: GP chunks without warm starts run singly, sizes in turn; other chains as planned."""

from __future__ import annotations

from gpllm.evaluate.grid import SweepConfig, plan_chains, plan_chunks
from gpllm.evaluate.runner.sweep import schedule, takes_warm_start
from gpllm.models.registry import ModelSpec

SIZES = (10, 20, 40)


def _scheduled(config):
    chunks = plan_chunks(config, ["K562", "RPE1"], SIZES)
    return chunks, schedule(config, chunks)


def test_every_chunk_is_scheduled_once_and_gp_chunks_alternate_sizes():
    config = SweepConfig(models=("gp", "knn_k1", "nonctrl_mean"), embeddings=("text", "sequence"), sizes=SIZES)
    chunks, chains = _scheduled(config)
    assert sorted(c.key for chain in chains for c in chain) == sorted(c.key for c in chunks)
    singles = [chain[0] for chain in chains if chain[0].model == "gp"]
    assert all(len(chain) == 1 for chain in chains if chain[0].model == "gp")
    assert chains[: len(singles)] == [[c] for c in singles]  # first, before any other chain
    assert [c.size for c in singles[:3]] == sorted(SIZES, reverse=True)
    assert all(a.size != b.size for a, b in zip(singles, singles[1:]))
    others = [chain for chain in plan_chains(config, chunks) if chain[0].model != "gp"]
    assert chains[len(singles) :] == others


def test_a_warm_started_gp_keeps_its_chain_in_size_order():
    spec = ModelSpec("gp", options=(("warm_start", True),))
    config = SweepConfig(models=(spec, "ridge"), embeddings=("text",), sizes=SIZES)
    assert takes_warm_start(config, spec)
    chunks, chains = _scheduled(config)
    assert chains == plan_chains(config, chunks)
    assert not takes_warm_start(SweepConfig(models=(spec,), embeddings=("text",), warm_start=False), spec)
    assert not takes_warm_start(config, config.spec("ridge"))
