"""data_scripts/convert_blink.py on a synthetic state dict in BLINK's layout (tiny BERT, hidden 32, 2 layers)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from data_scripts.convert_blink import convert_blink_state_dict, main

from .conftest import _vocab

TINY = {
    "vocab_size": len(_vocab()),  # the tiny tokenizer's: the CLI checks the tokenizer fits the towers
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
}


def blink_towers(seed: int = 0) -> tuple[BertModel, BertModel]:
    """Two independent BERTs (with pooler, as BLINK's) standing for BLINK's context and candidate encoders."""
    torch.manual_seed(seed)
    config = BertConfig(**TINY)
    return BertModel(config).eval(), BertModel(config).eval()


def blink_state_dict(
    context: BertModel, cand: BertModel, *, prefix: str = "", gamma_beta: bool = False
) -> dict[str, torch.Tensor]:
    """Rename to BLINK's keys: [module.]{context,cand}_encoder.bert_model.<name> (LayerNorm gamma/beta optional)."""
    out = {}
    for tower, model in (("context_encoder", context), ("cand_encoder", cand)):
        for name, value in model.state_dict().items():
            if gamma_beta:
                name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                    "LayerNorm.bias", "LayerNorm.beta"
                )
            out[f"{prefix}{tower}.bert_model.{name}"] = value.clone()
    return out


def cls_vectors(model: BertModel, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BLINK's embedding without add_linear: the [CLS] (leftmost) last hidden state."""
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, 0]


@pytest.mark.parametrize(("prefix", "gamma_beta"), [("", False), ("module.", True)])
def test_converted_towers_load_strict_and_match_outputs(prefix, gamma_beta):
    context, cand = blink_towers()
    state_dict = blink_state_dict(context, cand, prefix=prefix, gamma_beta=gamma_beta)
    mention_sd, entity_sd, config_dict = convert_blink_state_dict(state_dict, num_attention_heads=4)
    assert not any(key.startswith("pooler.") for key in mention_sd)  # the pooler is dropped
    config = BertConfig.from_dict(config_dict)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (32, 2, 64)
    assert (config.vocab_size, config.max_position_embeddings) == (TINY["vocab_size"], 40)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 99, (3, 12), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, 8:] = 0
    for original, converted_sd in ((context, mention_sd), (cand, entity_sd)):
        tower = BertModel(config, add_pooling_layer=False).eval()
        tower.load_state_dict(converted_sd, strict=True)
        full = tower(input_ids=input_ids, attention_mask=mask).last_hidden_state
        expected = original(input_ids=input_ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(full, expected, atol=1e-6, rtol=0)
    # the two towers stay distinct (context -> mention, cand -> entity)
    assert not torch.equal(cls_vectors(context, input_ids, mask), cls_vectors(cand, input_ids, mask))


def test_heads_default_to_hidden_over_64():
    context, cand = blink_towers()
    with pytest.raises(ValueError, match="not a multiple of 64"):
        convert_blink_state_dict(blink_state_dict(context, cand))


def test_rejects_non_blink_and_add_linear_checkpoints():
    context, cand = blink_towers()
    with pytest.raises(ValueError, match="not a BLINK bi-encoder state dict: missing key 'context_encoder"):
        convert_blink_state_dict(context.state_dict())
    with_linear = blink_state_dict(context, cand)
    with_linear["context_encoder.additional_linear.weight"] = torch.zeros(8, 32)
    with pytest.raises(ValueError, match="add_linear"):
        convert_blink_state_dict(with_linear, num_attention_heads=4)
    truncated = blink_state_dict(context, cand)
    del truncated["cand_encoder.bert_model.encoder.layer.1.output.dense.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['encoder.layer.1.output.dense.weight'\]"):
        convert_blink_state_dict(truncated, num_attention_heads=4)


def test_cli_saves_a_dual_encoder_that_scores_like_blink(tmp_path, tiny_bert_dir):
    """End to end: CLI -> DualEncoderModel.save_pretrained -> from_pretrained; scores = BLINK's [CLS] dot products."""
    modeling = pytest.importorskip("hf_models.modeling.modeling_retriever")
    context, cand = blink_towers()
    torch.save(blink_state_dict(context, cand, prefix="module."), tmp_path / "biencoder.bin")
    main(
        [
            "--blink_checkpoint",
            str(tmp_path / "biencoder.bin"),
            "--output_dir",
            str(tmp_path / "dual"),
            "--tokenizer",
            str(tiny_bert_dir),
            "--num_attention_heads",
            "4",
        ]
    )
    model = modeling.DualEncoderModel.from_pretrained(tmp_path / "dual").eval()
    assert (tmp_path / "dual" / "tokenizer_config.json").exists()
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(
        tmp_path / "dual"
    )  # its markers are single tokens (score_texts needs it)
    assert len(saved.tokenize("[unused0] x [unused1]")) == 3
    input_ids = torch.randint(0, 99, (2, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        mentions = model.encode_mentions(input_ids, mask)
        entities = model.encode_entities(input_ids.flip(0), mask)
        scores = model.score_all(mentions, entities)  # [2, 2]
    expected = cls_vectors(context, input_ids, mask) @ cls_vectors(cand, input_ids.flip(0), mask).T
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
