"""Keyed noise, exact streaming Gumbel-top-k and the training-pool miner (Sections 6.2-6.3)."""

from __future__ import annotations

import random

import pytest
import torch
from scipy.stats import chisquare

from hf_models.index.entity_index import EntityIndex
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE
from hf_models.modeling.scoring import Representation
from hf_models.training.keyed_noise import KeyedNoise, fmix64, fmix64_int, string_keys
from hf_models.training.mining import NegativeMiner
from hf_models.training.samplers import hard_negatives, sample_negatives
from hf_models.training.streaming import merge_partials, stream_partial

N, E, K1 = 9, 23, 6


def test_fmix64_tensor_matches_python_reference():
    rng = random.Random(0)
    values = [rng.getrandbits(64) for _ in range(200)] + [0, 1, (1 << 64) - 1, 1 << 63]
    signed = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values], dtype=torch.long)
    got = [int(x) & ((1 << 64) - 1) for x in fmix64(signed).tolist()]
    assert got == [fmix64_int(v) for v in values]


def test_keyed_noise_is_chunking_invariant_and_uniform():
    noise = KeyedNoise(
        3, 1, string_keys([f"m{i}" for i in range(50)]), string_keys([f"e{j}" for j in range(40)])
    )
    full = noise.uniform()  # [50, 40]
    assert torch.equal(noise.rows(slice(10, 20)).cols(slice(5, 9)).uniform(), full[10:20, 5:9])
    assert ((full > 0) & (full < 1)).all()
    assert chisquare(torch.histc(full.float(), bins=10, min=0, max=1).numpy()).pvalue > 1e-3
    other_epoch = KeyedNoise(3, 2, noise.row_keys, noise.col_keys).uniform()
    assert not torch.equal(other_epoch, full)


def test_keyed_hard_first_draw_matches_softmax_chi_square():
    row = torch.linspace(-2.0, 2.0, 10)
    num_draws = 20_000
    scores, gold = row[None].expand(num_draws, -1), torch.zeros(num_draws, dtype=torch.long)
    noise = KeyedNoise(5, 0, torch.arange(num_draws))
    first = hard_negatives(scores, gold, 3, noise).ids[:, 0]
    counts = torch.bincount(first, minlength=10)[1:].double()
    expected = row[1:].double().softmax(0) * num_draws
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


class _DotModel:
    """score_all of a dual encoder on ready-made vectors (mentions [n, 1, H] x entities [c, 1, H])."""

    def score_all(self, mentions: Representation, entities: Representation) -> torch.Tensor:
        return mentions.vectors[:, 0] @ entities.vectors[:, 0].T


def _rep(x: torch.Tensor) -> Representation:
    return Representation(vectors=x[:, None], mask=torch.ones(x.shape[0], 1, dtype=torch.bool))


@pytest.mark.parametrize("strategy", ["hard", "mixed", "topk"])
@pytest.mark.parametrize("chunk", [1, 4, 7, E])
def test_streamed_equals_full_row_draw_for_draw(strategy, chunk):
    gen = torch.Generator().manual_seed(0)
    mentions, entities = torch.randn(N, 8, generator=gen), torch.randn(E, 8, generator=gen)
    entities[5] = entities[11]  # an exact score tie: broken towards the lower entity
    gold = torch.randint(0, E, (N,), generator=gen)
    noise = KeyedNoise(
        7, 2, string_keys([f"m{i}" for i in range(N)]), string_keys([f"e{j}" for j in range(E)])
    )
    full = sample_negatives(strategy, mentions @ entities.T, gold, K1, noise, hard_fraction=0.5)
    num_hard = {"hard": K1, "topk": K1, "mixed": round(0.5 * K1)}[strategy]
    draws = (
        sample_negatives("random", None, gold, K1, noise, num_entities=E).ids
        if strategy == "mixed"
        else gold.new_empty(N, 0)
    )
    keyed = None if strategy == "topk" else noise
    for shards in (1, 2, 3):  # processes, each holding a contiguous 1/shards of the entities
        bounds = [round(E * s / shards) for s in range(shards + 1)]
        parts = [
            stream_partial(
                _DotModel(),
                _rep(mentions),
                _rep(entities[a:b]),
                a,
                gold,
                num_hard,
                keyed,
                draws,
                chunk_size=chunk,
                device=torch.device("cpu"),
            )  # fmt: skip
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        merged = merge_partials(parts, num_hard)
        ids = merged.ids
        if strategy == "mixed":
            from hf_models.training.draws import combine_hard_and_random

            ids = torch.cat([ids, draws.gather(1, combine_hard_and_random(ids, draws, K1))], 1)
        assert torch.equal(ids, full.ids), (strategy, chunk, shards)


def _miner(model, tiny_el, **kwargs) -> NegativeMiner:
    _, entities, splits = tiny_el
    index = EntityIndex(
        model, encode_dtype="float32", show_progress=False, chunk_size=kwargs.pop("entity_chunk", 4096)
    )
    defaults = {"strategy": "hard", "num_negatives": 5, "seed": 3, "chunk_size": 4, "pool": "training"}
    return NegativeMiner(index, splits["train"], entities, **{**defaults, **kwargs})


@pytest.mark.parametrize("strategy", ["random", "hard", "mixed", "topk"])
def test_training_pool_negatives(tiny_bert_dir, tiny_el, strategy):
    _, entities, splits = tiny_el
    train = splits["train"]
    torch.manual_seed(0)
    model = MODEL_BY_ARCHITECTURE["som"].from_encoder(str(tiny_bert_dir))
    mined = _miner(model, tiny_el, strategy=strategy).mine(0)
    training_worlds = set(train.worlds)
    seen_worlds = set()
    for i in range(len(train)):
        row = mined.ids[i].tolist()
        assert int(train.gold_rows[i]) not in row, "gold drawn as a negative"
        assert len(set(row)) == len(row), "duplicate negative"
        worlds = {entities.worlds[r] for r in row}
        assert worlds <= training_worlds, "negative outside the training worlds"
        seen_worlds |= worlds
    assert seen_worlds == training_worlds and len(training_worlds) > 1
    assert any(len({entities.worlds[r] for r in row}) > 1 for row in mined.ids.tolist()), "never mixed worlds"
    assert torch.isfinite(mined.log_probs).all()
    # chunking of mentions and entities cannot change the draw
    again = _miner(model, tiny_el, strategy=strategy, chunk_size=7, entity_chunk=5).mine(0)
    assert torch.equal(again.ids, mined.ids)
    assert torch.allclose(again.log_probs, mined.log_probs, atol=1e-3)  # batch padding: float noise


def test_miner_equals_full_row_sampler_on_the_model_scores(tiny_bert_dir, tiny_el):
    _, entities, splits = tiny_el
    train = splits["train"]
    torch.manual_seed(0)
    model = MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir)).eval()
    miner = _miner(model, tiny_el, strategy="mixed", entity_chunk=5)
    mined = miner.mine(2)
    pool = miner.pools[0].entity_rows
    index = miner.index
    with torch.no_grad():
        ents = index.encode_entities_sharded(entities.input_ids[pool], entities.attention_mask[pool])
        ments = index.encode_mentions(train.input_ids, train.attention_mask)
        scores = model.score_all(ments, ents).float()
    gold = torch.tensor([pool.tolist().index(int(g)) for g in train.gold_rows])
    noise = KeyedNoise(
        3, 2, string_keys(train.mention_ids), string_keys([entities.entity_ids[r] for r in pool])
    )
    full = sample_negatives("mixed", scores, gold, 5, noise, hard_fraction=0.5)
    assert torch.equal(pool[full.ids], mined.ids)
    assert torch.allclose(full.log_probs, mined.log_probs, atol=1e-4)


def test_world_pool_stays_in_world(tiny_bert_dir, tiny_el):
    _, entities, splits = tiny_el
    train = splits["train"]
    mined = _miner(
        MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir)), tiny_el, pool="world"
    ).mine(0)
    for i, row in enumerate(mined.ids.tolist()):
        assert {entities.worlds[r] for r in row} == {train.worlds[i]}


def test_labeled_pool_draws_only_other_golds_of_the_world(tiny_bert_dir, tiny_el):
    """negative_pool='labeled': negatives are golds of other training mentions of the same world, never the own."""
    _, entities, splits = tiny_el
    train = splits["train"]
    golds_by_world: dict[str, set[int]] = {}
    for world, gold in zip(train.worlds, train.gold_rows.tolist(), strict=True):
        golds_by_world.setdefault(world, set()).add(gold)
    num_negatives = min(len(g) for g in golds_by_world.values()) - 1
    assert num_negatives >= 2
    model = MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir))
    for strategy in ("random", "hard"):
        miner = _miner(model, tiny_el, pool="labeled", strategy=strategy, num_negatives=num_negatives)
        assert sum(len(p.entity_rows) for p in miner.pools) == sum(len(g) for g in golds_by_world.values())
        mined = miner.mine(0)
        for i, row in enumerate(mined.ids.tolist()):
            gold = int(train.gold_rows[i])
            assert gold not in row and len(set(row)) == len(row)
            assert set(row) <= golds_by_world[train.worlds[i]] - {gold}
    with pytest.raises(ValueError, match=r"\(labeled\)' has"):
        _miner(model, tiny_el, pool="labeled", num_negatives=num_negatives + 1)


def test_alias_pool_adds_each_mentions_alias_candidates(tiny_bert_dir, tiny_el):
    """negative_pool='alias': a world's pool is its labeled entities plus its mentions' alias candidates."""
    _, entities, splits = tiny_el
    train = splits["train"]
    # two alias candidates per mention: the next two entities of its world that are not its gold
    alias_rows = torch.full((len(train), 3), -1, dtype=torch.long)
    expected: dict[str, set[int]] = {}
    for i, (world, gold) in enumerate(zip(train.worlds, train.gold_rows.tolist(), strict=True)):
        others = [r for r in entities.rows_by_world[world].tolist() if r != gold][i % 3 : i % 3 + 2]
        alias_rows[i, : len(others)] = torch.tensor(others)
        expected.setdefault(world, set()).update([gold, *others])
    model = MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir))
    miner = _miner(model, tiny_el, pool="alias", num_negatives=2, alias_rows=alias_rows)
    assert {p.name: set(p.entity_rows.tolist()) for p in miner.pools} == {
        f"{w} (alias)": rows for w, rows in expected.items()
    }
    mined = miner.mine(0)
    for i, row in enumerate(mined.ids.tolist()):
        assert int(train.gold_rows[i]) not in row and set(row) <= expected[train.worlds[i]]
    with pytest.raises(ValueError, match="needs alias_rows"):
        _miner(model, tiny_el, pool="alias", num_negatives=2)


def test_pool_too_small_is_refused(tiny_bert_dir, tiny_el):
    with pytest.raises(ValueError, match="negative pool 'alpha' has 12 entities"):
        _miner(
            MODEL_BY_ARCHITECTURE["dual"].from_encoder(str(tiny_bert_dir)),
            tiny_el,
            pool="world",
            num_negatives=20,
        )


def _launch_mining(num_processes: int, model_dir, out) -> dict:
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import REPO_ROOT

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [
        accelerate, "launch", *(["--multi_gpu"] if num_processes > 1 else ["--cpu"]),
        "--num_machines", "1", "--num_processes", str(num_processes), "--main_process_port",
        str(29540 + num_processes), "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO_ROOT / "tests" / "dist_mining_check.py"), "--model_dir", str(model_dir), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(Path(out).read_text())


@pytest.mark.slow
def test_two_processes_stream_the_same_draws(tmp_path, tiny_bert_dir):
    """Training-pool mining with 2 gloo processes (each holding half the entities) = 1 process, any chunk size."""
    single = _launch_mining(1, tiny_bert_dir, tmp_path / "one.json")
    double = _launch_mining(2, tiny_bert_dir, tmp_path / "two.json")
    assert (single.pop("world_size"), double.pop("world_size")) == (1, 2)
    assert double == single
    for strategy in ("random", "hard", "mixed", "topk"):
        assert single[f"{strategy}/5"] == single[f"{strategy}/64"], strategy
