"""Convert a BLINK bi-encoder checkpoint into this repository's dual encoder (Section 6.8: BLINK's dual encoder,
fine-tuned on AIDA with hard negatives).

BLINK (facebookresearch/BLINK, ``biencoder_wiki_large.bin``) saves ``BiEncoderModule.state_dict()``:
``context_encoder.bert_model.<BERT params>`` (mentions) and ``cand_encoder.bert_model.<BERT params>`` (entities),
``module.``-prefixed when saved from DataParallel, and ``*.additional_linear.*`` when trained with ``add_linear``.
Without ``add_linear`` BLINK scores the dot product of the two [CLS] (leftmost) hidden states, which is exactly
this repository's ``dual`` (``DualConfig``: one leftmost vector per side). With ``add_linear`` BLINK scores a
linear projection of the *pooler* output, which the dual encoder has no parameters for: conversion is refused.

Parameter names: BLINK's pytorch_transformers BERT uses transformers' names; checkpoints from the older
pytorch_pretrained_bert call LayerNorm parameters ``gamma`` / ``beta`` (mapped to ``weight`` / ``bias``). The
pooler (``pooler.dense.*``) is dropped (the towers are built with ``add_pooling_layer=False``) and reported.
BLINK's mention markers are BERT's ``[unused0]`` / ``[unused1]`` and its title separator ``[unused2]``, as in this
repository's featurization, so the original uncased BERT tokenizer is used unchanged.

CLI::

    python -m data_scripts.convert_blink --blink_checkpoint models/biencoder_wiki_large.bin \\
        --output_dir checkpoints/blink-dual [--tokenizer bert-large-uncased]
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

TOWERS = {"context_encoder": "mention_encoder", "cand_encoder": "entity_encoder"}
BERT_PREFIX = "bert_model."
LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.")
KNOWN_SIZES = {(12, 768): "bert-base", (24, 1024): "bert-large"}


@dataclass
class ConversionReport:
    """What the conversion did with keys that are not copied one-to-one."""

    renamed: dict[str, str] = field(default_factory=dict)  # BLINK key -> tower key (gamma/beta, prefixes)
    dropped: list[str] = field(default_factory=list)  # pooler / position_ids buffers


def strip_data_parallel(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove any number of leading ``module.`` prefixes (DataParallel / DistributedDataParallel)."""
    return {re.sub(r"^(module\.)+", "", key): value for key, value in state_dict.items()}


def rename_bert_key(key: str) -> str:
    """pytorch_pretrained_bert -> transformers names: ``LayerNorm.gamma``/``beta`` -> ``weight``/``bias``."""
    return re.sub(
        r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    )


def check_blink_layout(state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ValueError unless both BLINK towers are present and no ``additional_linear`` was trained."""
    for tower in TOWERS:
        needed = f"{tower}.{BERT_PREFIX}embeddings.word_embeddings.weight"
        if needed not in state_dict:
            sample = sorted(state_dict)[:5]
            raise ValueError(
                f"not a BLINK bi-encoder state dict: missing key {needed!r} (expected "
                f"'context_encoder.bert_model.*' and 'cand_encoder.bert_model.*'); first keys found: {sample}"
            )
    linear = sorted(key for key in state_dict if ".additional_linear." in key)
    if linear:
        raise ValueError(
            f"this BLINK checkpoint was trained with add_linear ({linear}): its score projects the BERT pooler "
            "output through an extra linear layer, which the dual encoder (dot product of the [CLS] hidden "
            "states) cannot represent. Only checkpoints trained without add_linear (e.g. biencoder_wiki_large.bin) "
            "convert exactly."
        )


def split_tower(
    state_dict: dict[str, torch.Tensor], tower: str, report: ConversionReport
) -> dict[str, torch.Tensor]:
    """One BLINK tower's BERT params under transformers' BertModel names (pooler and position ids dropped)."""
    prefix = f"{tower}.{BERT_PREFIX}"
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = rename_bert_key(key[len(prefix) :])
        if name.startswith("pooler.") or name.endswith("position_ids"):
            report.dropped.append(key)
            continue
        if name != key[len(prefix) :]:
            report.renamed[key] = name
        out[name] = value
    return out


def infer_bert_config(
    tower: dict[str, torch.Tensor], num_attention_heads: int | None = None
) -> dict[str, Any]:
    """A BertConfig dict from a tower's parameter shapes (heads = hidden / 64, BERT's head size, by default)."""
    from transformers import BertConfig

    vocab_size, hidden = tower["embeddings.word_embeddings.weight"].shape
    layers = {int(match.group(1)) for key in tower if (match := LAYER_RE.match(key))}
    num_layers = max(layers) + 1 if layers else 0
    if layers != set(range(num_layers)):
        raise ValueError(f"encoder layers are not contiguous: found layer indices {sorted(layers)}")
    if num_attention_heads is None:
        if hidden % 64:
            raise ValueError(
                f"hidden size {hidden} is not a multiple of 64: pass num_attention_heads explicitly"
            )
        num_attention_heads = hidden // 64
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=tower["encoder.layer.0.intermediate.dense.weight"].shape[0]
        if num_layers
        else hidden * 4,
        max_position_embeddings=tower["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=tower["embeddings.token_type_embeddings.weight"].shape[0],
    )
    size = KNOWN_SIZES.get((num_layers, hidden), "custom-size BERT")
    logger.info(
        "BLINK tower looks like %s (%d layers, hidden %d, vocab %d)", size, num_layers, hidden, vocab_size
    )
    return config.to_dict()


def expected_keys(config_dict: dict[str, Any]) -> set[str]:
    """State-dict keys of transformers' BertModel(add_pooling_layer=False), built on the meta device (no memory)."""
    from transformers import BertConfig, BertModel

    with torch.device("meta"):
        model = BertModel(BertConfig.from_dict(config_dict), add_pooling_layer=False)
    return set(model.state_dict())


def check_tower_keys(tower: dict[str, torch.Tensor], expected: set[str], name: str) -> None:
    missing, unexpected = sorted(expected - set(tower)), sorted(set(tower) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{name}: cannot map onto BertModel: missing keys {missing}, unexpected keys {unexpected}"
        )


def convert_blink_state_dict(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """BLINK bi-encoder state dict -> (mention_encoder state dict, entity_encoder state dict, BertConfig dict).

    Both returned state dicts load with ``strict=True`` into ``BertModel(config, add_pooling_layer=False)``.
    ``num_attention_heads`` cannot be read from shapes (default hidden / 64: 12 for bert-base, 16 for
    bert-large). Dropped keys (pooler) are logged.
    """
    state_dict = strip_data_parallel(state_dict)
    check_blink_layout(state_dict)
    report = ConversionReport()
    mention = split_tower(state_dict, "context_encoder", report)
    entity = split_tower(state_dict, "cand_encoder", report)
    config = infer_bert_config(mention, num_attention_heads)
    keys = expected_keys(config)
    check_tower_keys(mention, keys, "context_encoder (mention_encoder)")
    check_tower_keys(entity, keys, "cand_encoder (entity_encoder)")
    mismatched = sorted(k for k in keys if entity[k].shape != mention[k].shape)
    if mismatched:
        raise ValueError(f"cand_encoder and context_encoder parameter shapes differ for {mismatched[:5]}")
    leftover = sorted(k for k in state_dict if not k.startswith(tuple(f"{t}.{BERT_PREFIX}" for t in TOWERS)))
    if leftover:
        logger.warning("ignoring keys outside the two BERT towers: %s", leftover)
    if report.renamed:
        logger.info("renamed %d gamma/beta LayerNorm keys to weight/bias", len(report.renamed))
    logger.info("dropped %d keys not used by the dual encoder: %s", len(report.dropped), report.dropped)
    return mention, entity, config


def save_dual_encoder(
    mention: dict[str, torch.Tensor],
    entity: dict[str, torch.Tensor],
    config_dict: dict[str, Any],
    output_dir: str | Path,
    tokenizer: str | None = None,
) -> Path:
    """Build this repository's ``DualEncoderModel``, load both towers strictly and ``save_pretrained`` it (with the
    tokenizer, its marker tokens registered) into ``output_dir`` atomically."""
    from hf_models.atomic import atomic_folder
    from hf_models.modeling.configuration_retriever import DualConfig
    from hf_models.modeling.modeling_retriever import DualEncoderModel
    from hf_models.recipes.model_setup import fit_embeddings

    from .featurize import prepare_tokenizer

    model = DualEncoderModel(DualConfig(mention_encoder=config_dict, entity_encoder=config_dict))
    model.mention_encoder.load_state_dict(mention, strict=True)
    model.entity_encoder.load_state_dict(entity, strict=True)
    output = Path(output_dir)
    loaded = None
    if tokenizer is not None:
        from transformers import AutoTokenizer

        loaded = AutoTokenizer.from_pretrained(tokenizer)
        prepare_tokenizer(loaded)  # the saved model's score_texts / linker need the markers as single tokens
        fit_embeddings(model, loaded)
    with atomic_folder(output, replaces="config.json") as temporary:
        model.save_pretrained(temporary)
        if loaded is not None:
            loaded.save_pretrained(temporary)
    logger.info("saved the converted BLINK dual encoder to %s", output)
    return output


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a BLINK ``.bin`` (a plain state dict; tensors only, so ``weights_only=True``)."""
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state_dict).__name__}")
    return state_dict


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a BLINK bi-encoder checkpoint to a DualEncoderModel."
    )
    parser.add_argument("--blink_checkpoint", required=True, help="e.g. models/biencoder_wiki_large.bin")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer name or folder saved alongside (BLINK: bert-large-uncased)",
    )
    parser.add_argument("--num_attention_heads", type=int, default=None, help="default: hidden size / 64")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    mention, entity, config = convert_blink_state_dict(
        load_checkpoint(args.blink_checkpoint), args.num_attention_heads
    )
    save_dual_encoder(mention, entity, config, args.output_dir, args.tokenizer)


if __name__ == "__main__":
    main()
