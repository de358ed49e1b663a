"""The peers of benchmarks/vs_sentence_transformers.py: sentence-transformers' MNRL recipe and PyLate's ColBERT.

Both train on the exact inputs the repo's models see (:func:`decode` turns the featurized token ids back into text)
and are evaluated by THIS repo's evaluation: the sentence-transformers model is converted to a ``DualEncoderModel``
(mean pooling, one shared encoder, cosine x 20); PyLate runs in its own venv and returns rankings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def decode(tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
    """The exact inputs the repo's models see, as text for sentence-transformers ([CLS]/[SEP]/padding dropped)."""
    texts = []
    for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
        ids = [i for i, m in zip(ids, mask, strict=True) if m][1:-1]
        texts.append(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
    return texts


# --------------------------------------------------------------------------------- sentence-transformers
def train_sentence_transformers(
    cli: argparse.Namespace,
    tables,
    encoder: str,
    train: bool = True,
    corpus: str = "positives",
    batch_size: int = 32,
    learning_rate: float | None = None,
):
    """The MNRL baseline; returns it as a DualEncoderModel (mean pooling, shared encoder, cosine x 20).

    ``corpus``: what ``mine_hard_negatives`` searches: ``positives`` (its default: the training pairs' positives)
    or ``kb`` (every entity of the training worlds; never the evaluation worlds). ``train=False`` stops after
    ``mine_hard_negatives`` and returns the (anchor, positive, negative) triplets.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from sentence_transformers.util import mine_hard_negatives

    from data_scripts.featurize import prepare_tokenizer
    from hf_models import DualConfig, DualEncoderModel
    from hf_models.index.encoding import autocast_for, resolve_encode_dtype

    tok = tables.tokenizer
    anchors = decode(tok, tables.train.input_ids, tables.train.attention_mask)
    entity_texts = decode(tok, tables.train_entities.input_ids, tables.train_entities.attention_mask)
    positives = [entity_texts[row] for row in tables.train.gold_rows.tolist()]
    train_worlds = set(tables.train.worlds)
    kb = [
        entity_texts[r]
        for w, rows in tables.train_entities.rows_by_world.items()
        if w in train_worlds
        for r in rows
    ]
    model = SentenceTransformer(encoder, device="cpu")
    model.max_seq_length = cli.max_length
    prepare_tokenizer(model.tokenizer)  # the markers stay single tokens, as in the repo's featurizer
    pairs = Dataset.from_dict({"anchor": anchors, "positive": positives})
    device = torch.device("cpu")
    # mining encodes under the same autocast as the repo's mining (encode_dtype auto: bf16 where the CPU has it)
    with torch.inference_mode(), autocast_for(device, resolve_encode_dtype("auto", device)):
        triplets = mine_hard_negatives(
            pairs,
            model,
            corpus=kb if corpus == "kb" else None,
            num_negatives=1,
            batch_size=128,
            verbose=False,
        )
    if not train:
        return triplets
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(cli.output_dir) / "st"),
        num_train_epochs=cli.num_train_epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate or cli.learning_rate,
        bf16=cli.train_bf16,
        use_cpu=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        logging_steps=50,
        seed=cli.seed,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=triplets, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    backbone = model[0].auto_model
    config = DualConfig(
        query_reduction="mean",
        key_reduction="mean",
        similarity="cosine",
        similarity_scale=20.0,
        shared_encoder=True,
        mention_encoder=backbone.config.to_dict(),
        entity_encoder=backbone.config.to_dict(),
    )
    retriever = DualEncoderModel(config)
    state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("pooler.")}
    retriever.mention_encoder.load_state_dict(state)
    return retriever, trainer.state.global_step


# ---------------------------------------------------------------------------------------------- PyLate
def run_pylate(cli: argparse.Namespace, tables, encoder: str) -> tuple[dict, float, float, int]:
    """PyLate's ColBERT (contrastive loss, in-batch + the same mined hard negative) in its own venv.

    Returns ({split: metrics}, train seconds incl. mining, eval seconds, number of triplets).
    """
    import subprocess
    import tempfile

    from hf_models.index.evaluation import Ranking, evaluate_ranking

    if not cli.pylate_python:
        raise SystemExit(
            "--systems pylate needs --pylate_python (a venv with `pip install pylate`, see the docstring)"
        )
    start = time.perf_counter()
    triplets = train_sentence_transformers(cli, tables, encoder, train=False)
    mining_seconds = time.perf_counter() - start
    tok, entities = tables.tokenizer, tables.eval_entities
    entity_texts = decode(tok, entities.input_ids, entities.attention_mask)
    pools, layout = {}, {}
    for split, mentions in tables.evals.items():
        queries = decode(tok, mentions.input_ids, mentions.attention_mask)
        for world, indices in mentions.indices_by_world().items():
            rows = entities.rows_by_world[world]
            pools[f"{split}/{world}"] = {
                "documents": [entity_texts[r] for r in rows.tolist()],
                "queries": [queries[i] for i in indices.tolist()],
            }
            layout[f"{split}/{world}"] = (split, indices, rows)
    with tempfile.TemporaryDirectory() as scratch:
        spec = {
            "encoder": encoder,
            "max_length": cli.max_length,
            "epochs": cli.num_train_epochs,
            "batch_size": 32,
            "learning_rate": cli.learning_rate,
            "seed": cli.seed,
            "bf16": cli.train_bf16,
            "k": 64,
            "output_dir": f"{scratch}/out",
            "result_file": f"{scratch}/result.json",
            "triplets": triplets.to_dict(),
            "pools": pools,
        }
        Path(f"{scratch}/spec.json").write_text(json.dumps(spec))
        peer = Path(__file__).with_name("_pylate_peer.py")
        subprocess.run([cli.pylate_python, str(peer), f"{scratch}/spec.json"], check=True)
        result = json.loads(Path(spec["result_file"]).read_text())
    results = {}
    for split, mentions in tables.evals.items():
        rows = torch.full((len(mentions), 64), -1, dtype=torch.long)
        for name, (pool_split, indices, world_rows) in layout.items():
            if pool_split != split:
                continue
            for i, top in zip(indices.tolist(), result["rankings"][name], strict=True):
                rows[i, : len(top)] = world_rows[torch.tensor(top, dtype=torch.long)]
        scores = -torch.arange(64, dtype=torch.float).expand(len(mentions), 64).clone()  # rank order only
        results[split] = evaluate_ranking(
            Ranking(rows=rows, scores=scores), mentions, entities, ks=(1, 8, 64)
        )
    return results, mining_seconds + result["train_s"], result["eval_s"], len(triplets)
