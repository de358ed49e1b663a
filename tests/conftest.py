"""Shared offline fixtures: a tiny random BERT (hidden 32, 2 layers) saved to a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
ZESHEL_SAMPLE = REPO_ROOT / "tests" / "data" / "zeshel_sample"  # real CC-BY-SA excerpt, vendored

_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "were",
    "he",
    "she",
    "it",
    "they",
    "his",
    "her",
    "their",
    "on",
    "at",
    "by",
    "for",
    "with",
    "from",
    "as",
    "that",
    "this",
    "which",
    "who",
    "war",
    "battle",
    "empire",
    "star",
    "wars",
    "doctor",
    "who",
    "time",
    "lord",
    "dalek",
    "jedi",
    "sith",
    "planet",
    "ship",
    "army",
    "general",
    "king",
    "queen",
    "city",
    "house",
    "force",
    "clone",
    "trooper",
    "republic",
    "wrestler",
    "champion",
    "title",
    "match",
    "military",
    "officer",
    "soldier",
    "navy",
    "air",
    "weapon",
    "rifle",
    "tank",
    "computer",
    "program",
    "language",
    "system",
    "unix",
    "file",
    "data",
    "network",
    "memory",
    "code",
    "bug",
    "hacker",
    "jargon",
    "user",
    "kernel",
    "process",
    "function",
    "variable",
    "list",
    "link",
    "entity",
    "mention",
    "world",
    "text",
    "one",
    "two",
    "three",
    "first",
    "second",
    "new",
    "old",
    "great",
    "small",
    "large",
    "known",
    "called",
    "also",
    "after",
    "before",
    "during",
]


def _vocab() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(10)]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    punct = list(".,;:!?'\"()-_/[]{}&%$#@*+=<>")
    pieces = [f"##{c}" for c in letters]
    return special + letters + punct + pieces + sorted(set(_WORDS))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random 2-layer BERT (hidden 32) + BertTokenizerFast saved with save_pretrained; fully offline."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = {token: index for index, token in enumerate(_vocab())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    assert len(tokenizer) == len(vocab), "tiny tokenizer did not take its vocabulary"
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=160,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def zeshel_sample_dir() -> Path:
    assert ZESHEL_SAMPLE.exists(), f"the vendored Zeshel excerpt is missing: {ZESHEL_SAMPLE}"
    return ZESHEL_SAMPLE


def make_tiny_tables(
    worlds: dict[str, str], entities_per_world: int = 12, mentions_per_world: int = 10, seed: int = 0
):
    """Synthetic raw tables in the processed schema: worlds -> split; entity text from the tiny vocabulary.

    Each mention's surface is one of its gold entity's title words, so a model can learn the task.
    """
    import random

    import datasets

    rng = random.Random(seed)
    entity_rows, mention_rows = [], []
    for world, split in worlds.items():
        for e in range(entities_per_world):
            words = rng.sample(_WORDS, 12)
            entity_rows.append(
                {
                    "entity_id": f"{world}-e{e}",
                    "world": world,
                    "title": " ".join(words[:2]),
                    "text": " ".join(words),
                }
            )
        world_entities = [row for row in entity_rows if row["world"] == world]
        for i in range(mentions_per_world):
            gold = rng.choice(world_entities)
            mention_rows.append(
                {
                    "mention_id": f"{world}-m{i}",
                    "world": world,
                    "left_context": " ".join(rng.sample(_WORDS, 6)),
                    "mention": gold["title"].split()[0],
                    "right_context": " ".join(rng.sample(_WORDS, 6)),
                    "label_id": gold["entity_id"],
                    "category": rng.choice(["LOW_OVERLAP", "HIGH_OVERLAP"]),
                    "split": split,
                }
            )
    splits = sorted({row["split"] for row in mention_rows})
    mentions = datasets.DatasetDict(
        {s: datasets.Dataset.from_list([r for r in mention_rows if r["split"] == s]) for s in splits}
    )
    return mentions, datasets.Dataset.from_list(entity_rows)


@pytest.fixture(scope="session")
def tiny_el(tiny_bert_dir):
    """(tokenizer, EntityTable, {split: MentionTable}) over 2 training worlds and 1 validation world, 24 tokens."""
    from transformers import AutoTokenizer

    from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
    from hf_models.index.tables import EntityTable, MentionTable

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    mentions, entities = make_tiny_tables({"alpha": "train", "beta": "train", "gamma": "val"})
    entity_table = EntityTable.from_dataset(featurize_entities(entities, tokenizer, max_length=24))
    splits = {
        split: MentionTable.from_dataset(
            featurize_mentions(ds, tokenizer, max_length=24), entity_table, split=split
        )
        for split, ds in mentions.items()
    }
    return tokenizer, entity_table, splits
