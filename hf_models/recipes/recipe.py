"""What every recipe does: parse YAML + CLI, build data/model/trainer, train, evaluate, write outputs, push.

The recipe scripts in `recipes/` are thin `main()`s around :func:`run_retriever_recipe` and
:func:`run_reranker_recipe`.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, set_seed

from data_scripts.aliases import AliasTable, load_aliases

from ..atomic import atomic_write_text
from ..index.alias_metrics import evaluate_alias_splits
from ..index.evaluation import (
    Ranking,
    evaluate_ranking,
    qualitative_report,
    read_candidate_file,
    write_candidate_file,
)
from ..index.tables import EntityTable, MentionTable
from ..publishing.hub import push_folder
from ..publishing.model_card import write_model_card
from ..training.callbacks import FixedNegatives
from ..training.mining import MinedNegatives
from ..training.trainer import NCETrainer
from ..training.training_args import NCETrainingArguments
from .config_parsing import parse_config
from .model_setup import build_model
from .recipe_args import DataArguments, ModelArguments, encoder_hub_id, resolve_encoder

logger = logging.getLogger(__name__)


def warn_cpu_bf16_training(args: NCETrainingArguments) -> None:
    """bf16 autocast TRAINING on a CPU without native bf16 dot products (AMX or AVX512-BF16) is ~13x slower than fp32
    (torch 2.13: the backward GEMMs fall back to ATen's reference kernel; measured 96 s vs 7 s for one MiniLM step on
    96 x 48 tokens on an AVX2-only EPYC). Say so, loudly. With AVX512-BF16 it is FASTER: one MiniLM step on 64 x 32
    tokens, one thread, took 1.3 s in bf16 vs 3.6-5.7 s in fp32 on an AMD EPYC with avx512_bf16."""
    from ..index.encoding import cpu_has_fast_bf16

    if not args.bf16 or args.device.type != "cpu" or cpu_has_fast_bf16():
        return
    logger.warning(
        "--bf16 true on a CPU without AMX or AVX512-BF16: bf16 autocast training is ~13x slower than fp32 here "
        "(docs/results.md, 'Where the time goes'); use --bf16 false (encoding for mining/evaluation follows "
        "--encode_dtype auto)"
    )


def setup_logging(args: NCETrainingArguments) -> None:
    level = args.get_process_log_level()
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level, stream=sys.stdout
    )
    logging.getLogger("hf_models").setLevel(level)
    from ..progress import interactive, set_progress

    if not interactive():  # a log file or a pipe: no progress bars (they would write escape codes)
        args.disable_tqdm = True
    set_progress(not args.disable_tqdm)  # the package's and datasets' bars follow --disable_tqdm


# --------------------------------------------------------------------------- data
@dataclass
class RecipeData:
    entities: EntityTable
    splits: dict[str, MentionTable]
    entity_texts: list[str]  # raw descriptions aligned with `entities` rows
    tokens_added: int = 0
    aliases: AliasTable | None = None  # the folder's alias table (aliases.parquet), when it has one


def load_recipe_data(data_args: DataArguments, tokenizer) -> RecipeData:
    """Load the processed tables, featurize them with `tokenizer`, and resolve golds to entity rows."""
    from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
    from data_scripts.io import load_processed

    mentions, entities = load_processed(data_args.dataset_dir)  # checks aliases.parquet too, when listed
    aliases = load_aliases(data_args.dataset_dir)
    for flag, split in (("--train_split", data_args.train_split), ("--eval_split", data_args.eval_split),
                        ("--test_split", data_args.test_split)):  # fmt: skip
        if split and split not in mentions:
            raise ValueError(
                f"{flag} {split!r}: {data_args.dataset_dir} has no such split (it has {sorted(mentions)}; pass "
                f"{flag} '' to use none)"
            )
    tokens_added = prepare_tokenizer(tokenizer)
    featurized_entities = featurize_entities(
        entities, tokenizer, max_length=data_args.max_length, num_proc=data_args.num_proc
    )
    entity_table = EntityTable.from_dataset(featurized_entities)
    splits = {}
    for split in (data_args.train_split, data_args.eval_split, data_args.test_split):
        if not split:
            continue
        dataset = mentions[split]
        limit = (
            data_args.max_train_mentions if split == data_args.train_split else data_args.max_eval_mentions
        )
        if limit is not None and limit < len(
            dataset
        ):  # a seeded sample across all worlds, not the first worlds
            dataset = dataset.shuffle(seed=0).select(range(limit))
        featurized = featurize_mentions(
            dataset, tokenizer, max_length=data_args.max_length, num_proc=data_args.num_proc
        )
        splits[split] = MentionTable.from_dataset(
            featurized, entity_table, split=f"{data_args.dataset_dir}:{split}"
        )
    if data_args.train_split not in splits:
        raise ValueError(
            f"{data_args.dataset_dir}: no training split {data_args.train_split!r} (has {list(mentions)})"
        )
    return RecipeData(
        entities=entity_table,
        splits=splits,
        entity_texts=list(featurized_entities["text"]),
        tokens_added=tokens_added,
        aliases=aliases,
    )


# ------------------------------------------------------------------------ outputs
def evaluate_splits(
    trainer: NCETrainer, data: RecipeData, data_args: DataArguments, candidates: dict[str, Ranking]
) -> dict:
    """Final metrics of the eval and test splits; candidate files for every split; the qualitative report.

    Without ``write_candidates`` the training split is not ranked at all (its worlds are not encoded). With an
    alias table, the eval and test splits also get the alias metrics (:mod:`hf_models.index.alias_metrics`): the
    prior weight is tuned on the eval split and applied unchanged to the test split.
    """
    output_dir = Path(trainer.args.output_dir)
    results = {}
    splits = {
        name: mentions
        for name, mentions in data.splits.items()
        if data_args.write_candidates
        or name != data_args.train_split
        or name in (data_args.eval_split, data_args.test_split)
    }
    # one pass over all splits: each world is encoded once, whichever splits have mentions in it
    rankings = trainer.predict_split_rankings(splits, data.entities, candidates)
    for split, mentions in splits.items():
        ranking = rankings[split]
        if split in (
            data_args.eval_split,
            data_args.test_split,
        ):  # also when one of them is the training split
            results[split] = evaluate_ranking(ranking, mentions, data.entities, ks=trainer.recall_ks)
        if data_args.write_candidates and trainer.is_world_process_zero():
            write_candidate_file(
                output_dir / "candidates" / f"{split}.jsonl", ranking, mentions, data.entities
            )
    if data.aliases is not None and results:
        alias_results = evaluate_alias_splits(
            trainer.model,
            data.aliases,
            {split: data.splits[split] for split in results},
            data.entities,
            data_args.eval_split if data_args.eval_split in results else None,
            cross=trainer.cross,
            batch_size=trainer.args.per_device_eval_batch_size,
            accelerator=trainer.accelerator,
        )
        for split, metrics in alias_results.items():
            results[split].update(metrics)
    if data_args.compare_with and data_args.eval_split in data.splits:
        write_comparison(trainer, data, data_args, rankings[data_args.eval_split], candidates)
    return results


def write_comparison(
    trainer, data: RecipeData, data_args: DataArguments, ranking: Ranking, candidates
) -> None:
    from ..index.evaluation import rerank, retrieve
    from ..modeling.modeling_retriever import RetrieverModel

    other = RetrieverModel.from_pretrained(data_args.compare_with).to(trainer.args.device)
    mentions = data.splits[data_args.eval_split]
    if trainer.index is not None:
        other_ranking = retrieve(
            trainer._make_index(other), mentions, data.entities, k=trainer.args.eval_top_k
        )
    else:
        other_ranking = rerank(other, candidates[data_args.eval_split], mentions, data.entities, cross=False)
    report = qualitative_report(
        mentions, data.entities, {"this model": ranking, Path(data_args.compare_with).name: other_ranking}
    )
    (Path(trainer.args.output_dir) / "qualitative.md").write_text(report)


def print_metrics(results: dict[str, dict[str, float]]) -> None:
    keys = ["recall@64", "recall@1", "unnormalized_accuracy", "normalized_accuracy", "alias_accuracy"]
    keys += ["alias_prior_accuracy", "num_mentions"]  # the alias metrics only with an alias table
    keys = [k for k in keys if any(k in r for r in results.values())] or sorted(next(iter(results.values())))
    print("\n| split | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for split, metrics in results.items():
        print(f"| {split} | " + " | ".join(f"{metrics.get(k, float('nan')):.2f}" for k in keys) + " |")


def finish(trainer: NCETrainer, results: dict, push: bool, push_candidates: bool = False) -> None:
    """Save the final (best) model with its card and metrics; push the inference folder when asked."""
    output_dir = Path(trainer.args.output_dir)
    trainer.log({f"final_{split}_{k}": v for split, m in results.items() for k, v in m.items()})
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        final = {f"{split}/{k}": v for split, metrics in results.items() for k, v in metrics.items()}
        write_model_card(
            output_dir, trainer.model.config, trainer.args, final, trainer.dataset_name, trainer.base_model
        )
        atomic_write_text(output_dir / "metrics.json", json.dumps(results, indent=2))
        print_metrics(results)
        if push:
            url = push_folder(
                output_dir,
                trainer.args.hub_model_id or output_dir.name,
                token=trainer.args.hub_token,
                push_candidates=push_candidates,
            )
            print(f"pushed to {url}")


def _parse(argv, default_config):
    model_args, data_args, args = parse_config(
        [ModelArguments, DataArguments, NCETrainingArguments], argv, default_config
    )
    push = args.push_to_hub
    args.push_to_hub = False  # we push the final folder ourselves (clear offline errors, model card included)
    setup_logging(args)
    warn_cpu_bf16_training(args)
    apply_total_batch(args)
    return model_args, data_args, args, push


def apply_total_batch(args: NCETrainingArguments) -> str:
    """Keep ``args.total_train_batch_size`` mentions per optimizer step for the launched process count.

    per process = total / processes (refused when it does not divide); per device = min(the configured
    per_device_train_batch_size, per process), which must divide it; accumulation = per process / per device.
    Returns (and logs) the effective batch: per device x processes x accumulation.
    """
    processes = args.world_size
    if args.total_train_batch_size is not None:
        total = args.total_train_batch_size
        if total % processes:
            raise ValueError(
                f"total_train_batch_size={total} mentions cannot be split over {processes} processes; launch with "
                f"--num_processes in {[p for p in range(1, total + 1) if total % p == 0]} or change the batch"
            )
        per_process = total // processes
        per_device = min(args.per_device_train_batch_size, per_process)
        if per_process % per_device:
            raise ValueError(
                f"per_device_train_batch_size={per_device} does not divide the {per_process} mentions per process "
                f"of total_train_batch_size={total} over {processes} processes"
            )
        args.per_device_train_batch_size = per_device
        args.gradient_accumulation_steps = per_process // per_device
    effective = args.per_device_train_batch_size * processes * args.gradient_accumulation_steps
    message = (
        f"effective batch: {args.per_device_train_batch_size} per device x {processes} processes x "
        f"{args.gradient_accumulation_steps} accumulation = {effective} mentions per optimizer step"
    )
    logger.info(message)
    return message


def run_retriever_recipe(argv=None, default_config: str | None = None) -> dict:
    """Train a retriever with NCE and the configured negatives, evaluate it, write candidates and card."""
    model_args, data_args, args, push = _parse(argv, default_config)
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(model_args.encoder))
    data = load_recipe_data(data_args, tokenizer)
    model = build_model(model_args, tokenizer, data_args.max_length)
    trainer = NCETrainer(
        model,
        args,
        data.splits[data_args.train_split],
        data.entities,
        eval_mentions=data.splits.get(data_args.eval_split),
        aliases=data.aliases,
        processing_class=tokenizer,
        dataset_name=data_args.dataset_dir,  # a local folder: the card names it, links no Hub dataset
        base_model=encoder_hub_id(model_args.encoder),
    )
    if data_args.bias_probe_mentions > 0:
        from ..analysis.bias_probe import GradientBiasCallback

        trainer.add_callback(
            GradientBiasCallback.from_trainer(
                trainer,
                data_args.bias_probe_mentions,
                data_args.bias_probe_draws,
                args.seed,
                data.entity_texts,
            )
        )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    results = evaluate_splits(trainer, data, data_args, candidates={})
    finish(trainer, results, push, data_args.push_candidates)
    return results


def fixed_negatives(candidates: Ranking, mentions: MentionTable, num_negatives: int) -> MinedNegatives:
    """Gold + top-(K-1) non-gold candidates of a fixed retriever (Section 6.3, "Training a reranker")."""
    ids = torch.empty(len(mentions), num_negatives, dtype=torch.long)
    for i, (row, gold) in enumerate(zip(candidates.rows.tolist(), mentions.gold_rows.tolist(), strict=True)):
        negatives = [r for r in row if r >= 0 and r != gold][:num_negatives]
        if len(negatives) < num_negatives:
            raise ValueError(
                f"mention {mentions.mention_ids[i]!r}: the candidate file has {len(negatives)} non-gold candidates, "
                f"need {num_negatives} (num_candidates - 1)"
            )
        ids[i] = torch.tensor(negatives)
    return MinedNegatives(epoch=0, ids=ids, log_probs=torch.zeros(ids.shape))


def run_reranker_recipe(argv=None, default_config: str | None = None) -> dict:
    """Train a reranker (default: joint) on a fixed retriever's candidate files; normalized/unnormalized accuracy."""
    model_args, data_args, args, push = _parse(argv, default_config)
    set_seed(args.seed)
    if not data_args.candidates_dir:
        raise ValueError("the reranker needs --candidates_dir (the retriever's output_dir/candidates)")
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(model_args.encoder))
    data = load_recipe_data(data_args, tokenizer)
    candidates = {
        split: read_candidate_file(Path(data_args.candidates_dir) / f"{split}.jsonl", mentions, data.entities)
        for split, mentions in data.splits.items()
    }
    model = build_model(model_args, tokenizer, data_args.max_length)
    train = data.splits[data_args.train_split]
    trainer = NCETrainer(
        model,
        args,
        train,
        data.entities,
        eval_mentions=data.splits.get(data_args.eval_split),
        eval_candidates=candidates.get(data_args.eval_split),
        negative_source=FixedNegatives(
            fixed_negatives(candidates[data_args.train_split], train, args.num_candidates - 1)
        ),
        processing_class=tokenizer,
        dataset_name=data_args.dataset_dir,  # a local folder: the card names it, links no Hub dataset
        base_model=encoder_hub_id(model_args.encoder),
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    results = evaluate_splits(trainer, data, data_args, candidates=candidates)
    finish(trainer, results, push, data_args.push_candidates)
    return results


def recipe_main(script: str, kind: str = "retriever"):
    """The `main(argv=None)` of a recipe script: its YAML is `configs/<script name>.yaml` next to it."""
    config = str(Path(script).resolve().parent / "configs" / f"{Path(script).stem}.yaml")
    run = run_retriever_recipe if kind == "retriever" else run_reranker_recipe

    def main(argv: list[str] | None = None) -> dict:
        return run(argv, default_config=config)

    return main
