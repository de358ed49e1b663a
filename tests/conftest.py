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
ZESHEL_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "zeshel_sample"

_WORDS = (
    "the a an of and to in is was were he she it they his her their on at by for with from as that this "
    "which who war battle empire star wars doctor who time lord dalek jedi sith planet ship army general "
    "king queen city house force clone trooper republic wrestler champion title match military officer "
    "soldier navy air weapon rifle tank computer program language system unix file data network memory "
    "code bug hacker jargon user kernel process function variable list link entity mention world text "
    "one two three first second new old great small large known called also after before during"
).split()


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
    (path / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
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
    if not ZESHEL_SAMPLE.exists():
        pytest.skip(f"real Zeshel excerpt not found at {ZESHEL_SAMPLE}")
    return ZESHEL_SAMPLE
