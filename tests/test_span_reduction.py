"""The "span" reduction: the mention side averages the mention's own tokens (between its markers)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hf_models import DualConfig
from hf_models.modeling.scoring import mean_reduction, span_token_mask
from hf_models.recipes.model_setup import build_model
from hf_models.recipes.recipe_args import ModelArguments

START, END = 1, 2


def test_span_token_mask_keeps_the_tokens_between_the_markers():
    ids = torch.tensor(
        [
            [101, 7, START, 8, 9, END, 10, 102],  # span = tokens 8 9
            [101, 7, 8, 9, 10, 102, 0, 0],  # no markers: the whole (unpadded) row
            [101, START, END, 7, 102, 0, 0, 0],  # empty span: the whole row
            [101, START, 8, END, 9, START, 11, END],  # the first marked span only
        ]
    )
    mask = ids != 0
    got = span_token_mask(ids, mask, START, END)
    assert got[0].nonzero().flatten().tolist() == [3, 4]
    assert torch.equal(got[1], mask[1]) and torch.equal(got[2], mask[2])
    assert got[3].nonzero().flatten().tolist() == [2]
    with pytest.raises(ValueError, match=r"input_ids and mask must both be \[N, T\]"):
        span_token_mask(ids, mask[:, :3], START, END)


def test_span_config_is_checked():
    with pytest.raises(ValueError, match="'span' reduction needs the token ids"):
        DualConfig(query_reduction="span", key_reduction="mean")
    with pytest.raises(ValueError, match="mention side only"):
        DualConfig(query_reduction="mean", key_reduction="span", mention_marker_ids=[1, 2])
    with pytest.raises(ValueError, match="two different token ids"):
        DualConfig(query_reduction="span", key_reduction="mean", mention_marker_ids=[1, 1])
    config = DualConfig(query_reduction="span", key_reduction="mean", mention_marker_ids=[1, 2])
    assert config.side("mention") == ("span", 1) and config.side("entity") == ("mean", 1)


@pytest.fixture(scope="module")
def span_model(tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model_args = ModelArguments(architecture="dual", encoder=str(tiny_bert_dir), reduction="span")
    model = build_model(model_args, tokenizer, 16).eval()
    return model, tokenizer


def test_span_model_encodes_the_mention_tokens_and_entities_by_their_mean(span_model):
    model, tokenizer = span_model
    start, end = tokenizer.convert_tokens_to_ids(["[unused0]", "[unused1]"])
    assert model.config.mention_marker_ids == [start, end]
    ids = torch.tensor([[tokenizer.cls_token_id, 9, start, 10, 11, end, 12, tokenizer.sep_token_id]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        hidden = model.mention_encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # [1, 8, H]
        got = model.encode_mentions(ids, mask).vectors  # [1, 1, H]
        entity = model.encode_entities(ids, mask).vectors
    assert torch.allclose(got[0, 0], hidden[0, 3:5].mean(0), atol=1e-5)
    entity_hidden = model.entity_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(entity, mean_reduction(entity_hidden, mask.bool()), atol=1e-5)


def test_span_model_round_trips_through_remote_code(span_model, tmp_path: Path):
    """Saved, the model loads with only torch + transformers (the folder's own code) and encodes the same."""
    model, tokenizer = span_model
    folder = tmp_path / "span_dual"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    start, end = model.config.mention_marker_ids
    ids = torch.tensor([[tokenizer.cls_token_id, 9, start, 10, end, 12, tokenizer.sep_token_id]])
    with torch.no_grad():
        expected = model.encode_mentions(ids, torch.ones_like(ids)).vectors
    torch.save({"ids": ids, "expected": expected}, tmp_path / "inputs.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_models"] = None  # only the folder's code
        import torch
        from transformers import AutoModel
        data = torch.load({str(tmp_path / "inputs.pt")!r})
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert model.config.query_reduction == "span", model.config.query_reduction
        with torch.no_grad():
            got = model.encode_mentions(data["ids"], torch.ones_like(data["ids"])).vectors
        assert torch.allclose(got, data["expected"], atol=1e-6)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})


def test_span_refused_by_the_sentence_transformers_export(span_model, tmp_path: Path):
    from hf_models.publishing.st_export import export_sentence_transformer

    model, tokenizer = span_model
    with pytest.raises(ValueError, match="sentence-transformers' Pooling has no such mode"):
        export_sentence_transformer(model, tmp_path / "st", tokenizer=tokenizer)
