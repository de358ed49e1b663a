"""Appendix C: gradient bias of random / hard / mixed NCE for a retriever on an entity-linking label space.

Sample ``num_mentions`` (paper: 64) mentions of ``split``; the label space Y is their golds plus, per mention,
an entity whose description contains the mention (else a random entity of its world): up to 2P = 128 entities
(``hf_models.analysis.bias_probe.build_label_space``). J_CE (eq. 2) normalises over Y; J_HARD (eq. 5) over K = 8
candidates (7 negatives random / hard / mixed-50) averaged over ``num_draws`` (paper: 500) draws.

||b(theta)|| = ||grad J_CE - grad J_HARD|| (Section 3.1) is reported at two parameter points, both reached from
the same pretrained encoder by ``train_steps`` full-batch AdamW updates on the P mentions over Y:

- theta_CE: minimising J_CE (exact cross entropy over Y);
- theta_RAND: minimising eq. (11) with K - 1 random negatives from Y (fresh draw per update).

Outputs in ``output_dir``: bias_table.md (App. C's table + losses/accuracy) and bias_zeshel.json.

    nice python recipes/bias_zeshel.py --config recipes/configs/bias_zeshel.yaml --num_draws 100
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hf_models.analysis.bias import cross_entropy  # noqa: E402
from hf_models.analysis.bias_probe import BiasProbe, LabelSpace, label_space_from_datasets  # noqa: E402
from hf_models.atomic import atomic_write_text  # noqa: E402
from hf_models.index.tables import EntityTable, MentionTable  # noqa: E402
from hf_models.modeling.losses import nce_loss  # noqa: E402
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE  # noqa: E402
from hf_models.recipes.config_parsing import parse_config  # noqa: E402
from hf_models.recipes.model_setup import fit_embeddings  # noqa: E402
from hf_models.recipes.recipe_args import resolve_encoder  # noqa: E402
from hf_models.training.samplers import sample_negatives  # noqa: E402

logger = logging.getLogger("bias_zeshel")
DEFAULT_CONFIG = REPO_ROOT / "recipes" / "configs" / "bias_zeshel.yaml"
STRATEGY_NAMES = {"random": "Random", "hard": "Hard", "mixed": "Mixed", "topk": "Top-k"}
POINTS = ("theta_CE", "theta_RAND")


@dataclass
class BiasZeshelArguments:
    output_dir: str = field(
        default="outputs/bias_zeshel", metadata={"help": "bias_table.md and bias_zeshel.json."}
    )
    dataset_dir: str = field(
        default="data/glossary_el", metadata={"help": "Processed tables (docs/design.md)."}
    )
    split: str = field(
        default="train", metadata={"help": "Mention split the probe mentions are sampled from."}
    )
    encoder: str = field(
        default="embedded", metadata={"help": "Backbone name/path; 'embedded' = all-MiniLM-L6-v2."}
    )
    architecture: str = field(default="dual", metadata={"help": "dual, poly, multi, som or genpoly."})
    num_vectors: int | None = field(default=None, metadata={"help": "m of poly-m / multi-m / genpoly-m."})
    shared_encoder: bool = field(default=False, metadata={"help": "One encoder for mentions and entities."})
    max_length: int = field(default=32, metadata={"help": "Wordpieces per mention / entity (paper: 128)."})
    num_mentions: int = field(
        default=64, metadata={"help": "P sampled mentions; |Y| <= 2P (paper: 64 -> 128)."}
    )
    num_negatives: int = field(default=7, metadata={"help": "K - 1 negatives of J_HARD (paper: 7, K = 8)."})
    num_draws: int = field(default=500, metadata={"help": "Negative draws averaged in J_HARD (paper: 500)."})
    strategies: list[str] = field(
        default_factory=lambda: ["random", "hard", "mixed"],
        metadata={"help": "Negative distributions (rows)."},
    )
    hard_percent: float = field(default=50.0, metadata={"help": "Mixed-p: percent of hard negatives."})
    train_steps: int = field(
        default=10, metadata={"help": "Full-batch updates to reach theta_CE / theta_RAND."}
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate of both trainings."})
    measure_init: bool = field(
        default=False, metadata={"help": "Also report ||b|| at the pretrained theta_0."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds mention sampling, training negatives and draws."})
    num_threads: int = field(default=1, metadata={"help": "torch CPU threads."})


# ------------------------------------------------------------------------------------------------- data


def build_probe(args: BiasZeshelArguments, tokenizer) -> tuple[BiasProbe, LabelSpace]:
    """Sample the label space on the raw tables, featurize only its P mentions and Y entities."""
    from data_scripts.featurize import featurize_entities, featurize_mentions
    from data_scripts.io import load_processed

    mentions, entities = load_processed(args.dataset_dir)
    if args.split not in mentions:
        raise ValueError(f"{args.dataset_dir}: no split {args.split!r} (has {list(mentions)})")
    space = label_space_from_datasets(mentions[args.split], entities, args.num_mentions, args.seed)
    entity_table = EntityTable.from_dataset(
        featurize_entities(entities.select(space.entity_indices), tokenizer, max_length=args.max_length)
    )
    mention_table = MentionTable.from_dataset(
        featurize_mentions(
            mentions[args.split].select(space.mention_indices), tokenizer, max_length=args.max_length
        ),
        entity_table,
        split=f"{args.dataset_dir}:{args.split}",
    )
    if not torch.equal(mention_table.gold_rows, space.gold):
        raise RuntimeError("featurized golds do not match the label space")
    probe = BiasProbe(
        mention_table.input_ids, mention_table.attention_mask,
        entity_table.input_ids, entity_table.attention_mask, mention_table.gold_rows,
    )  # fmt: skip
    if probe.num_labels - 1 < args.num_negatives:  # a smaller K would be measured under this K's name
        raise ValueError(
            f"--num_negatives {args.num_negatives}: the label space of {args.num_mentions} mention(s) has only "
            f"{probe.num_labels} entities (at most {probe.num_labels - 1} negatives); lower it or add mentions"
        )
    return probe, space


def build_model(args: BiasZeshelArguments, tokenizer):
    """A retriever of ``args.architecture`` from the backbone, its embeddings fitted to the tokenizer's markers."""
    if args.architecture not in MODEL_BY_ARCHITECTURE:
        raise ValueError(
            f"architecture must be one of {sorted(MODEL_BY_ARCHITECTURE)}, got {args.architecture!r}"
        )
    kwargs: dict = {"shared_encoder": args.shared_encoder}
    if args.num_vectors is not None:
        kwargs["m"] = args.num_vectors
    torch.manual_seed(args.seed)
    model = MODEL_BY_ARCHITECTURE[args.architecture].from_encoder(resolve_encoder(args.encoder), **kwargs)
    fit_embeddings(model, tokenizer)  # grows only for added markers; a foreign tokenizer is an error
    return model


# --------------------------------------------------------------------------------------------- training


def train_point(model, probe: BiasProbe, objective: str, args: BiasZeshelArguments) -> list[dict[str, float]]:
    """``train_steps`` full-batch AdamW updates on the P probe mentions over Y (in place; dropout on).

    objective "ce": J_CE over Y (eq. 2) -> theta_CE; "random": eq. (11) with K - 1 uniform negatives from Y
    (without replacement, gold excluded; a fresh draw per update) -> theta_RAND. Returns the loss per update.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    generator = torch.Generator().manual_seed(args.seed + 1)
    num_negatives = args.num_negatives  # build_probe checked the label space holds K - 1 negatives
    model.train()
    history = []
    for step in range(args.train_steps):
        scores = probe.scores(model)  # [P, Y]
        gold = probe.gold.to(scores.device)
        if objective == "ce":
            loss = cross_entropy(scores, gold)
        else:
            negatives = sample_negatives(
                "random", None, gold, num_negatives, generator, num_entities=probe.num_labels
            )
            candidates = torch.cat([gold[:, None], negatives.ids.to(scores.device)], 1)  # [P, K]
            loss = nce_loss(scores.gather(1, candidates))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({"step": step + 1, "loss": loss.item()})
        logger.info("%s step %d/%d: loss %.4f", objective, step + 1, args.train_steps, loss.item())
    model.eval()
    return history


def measure_point(model, probe: BiasProbe, args: BiasZeshelArguments) -> dict:
    """J_CE, accuracy over Y and, per strategy, J_HARD and ||b(theta)|| (Appendix C)."""
    record: dict = dict(probe.evaluate(model))
    num_negatives = args.num_negatives  # build_probe checked the label space holds K - 1 negatives
    for strategy in args.strategies:
        start = time.time()
        result = probe.estimate(
            model, strategy, num_negatives, args.num_draws, args.hard_percent / 100.0, seed=args.seed + 2
        )
        record[strategy] = {"bias_norm": result.bias_norm, "nce_loss": result.nce_loss}
        record["ce_grad_norm"] = float(result.ce_grad.norm())
        logger.info(
            "%s: ||b|| %.4g, J_HARD %.4f (%.1fs)",
            strategy,
            result.bias_norm,
            result.nce_loss,
            time.time() - start,
        )
    return record


def run(args: BiasZeshelArguments) -> dict:
    """Build probe + model, train theta_CE and theta_RAND, measure; returns the JSON-able result."""
    torch.set_num_threads(args.num_threads)
    from data_scripts.featurize import prepare_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder))
    prepare_tokenizer(tokenizer)
    probe, space = build_probe(args, tokenizer)
    initial = build_model(args, tokenizer)
    points, training = {}, {}
    if args.measure_init:
        points["theta_0"] = measure_point(initial, probe, args)
    for name, objective in zip(POINTS, ("ce", "random"), strict=True):
        model = copy.deepcopy(initial)
        training[name] = train_point(model, probe, objective, args)
        points[name] = measure_point(model, probe, args)
        del model
    return {"config": asdict(args), "label_space": space.summary(), "points": points, "training": training}


# ---------------------------------------------------------------------------------------------- outputs


def _row_name(strategy: str, hard_percent: float) -> str:
    name = STRATEGY_NAMES.get(strategy, strategy)
    return f"{name}-{hard_percent:g}" if strategy == "mixed" else name


def format_table(result: dict) -> str:
    """App. C's table (rows: negatives, columns: ||b|| per point) followed by the losses and accuracy."""
    args, points = result["config"], result["points"]
    names = list(points)
    lines = [
        f"Label space: {result['label_space']['num_mentions']} mentions, {result['label_space']['num_labels']} "
        f"entities; K = {args['num_negatives'] + 1}; {args['num_draws']} draws; {args['train_steps']} training "
        f"steps; {args['architecture']} on {args['encoder']}; {args['dataset_dir']}",
        "",
        "| Negatives | " + " | ".join(f"‖b({n})‖" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for strategy in args["strategies"]:
        cells = " | ".join(f"{points[n][strategy]['bias_norm']:.4g}" for n in names)
        lines.append(f"| {_row_name(strategy, args['hard_percent'])} | {cells} |")
    lines += ["", "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines.append("| accuracy over Y | " + " | ".join(f"{points[n]['accuracy']:.2%}" for n in names) + " |")
    lines.append("| J_CE | " + " | ".join(f"{points[n]['ce_loss']:.4f}" for n in names) + " |")
    lines.append("| ‖∇J_CE‖ | " + " | ".join(f"{points[n]['ce_grad_norm']:.4g}" for n in names) + " |")
    for strategy in args["strategies"]:
        cells = " | ".join(f"{points[n][strategy]['nce_loss']:.4f}" for n in names)
        lines.append(f"| J_HARD {_row_name(strategy, args['hard_percent'])} | {cells} |")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, output_dir: Path) -> dict[str, Path]:
    paths = {"table": output_dir / "bias_table.md", "json": output_dir / "bias_zeshel.json"}
    atomic_write_text(paths["json"], json.dumps(result, indent=2))  # each file whole or absent
    atomic_write_text(paths["table"], format_table(result))
    return paths


def is_finite(result: dict) -> bool:
    """Every measured number is finite (used by tests)."""
    values = [v for p in result["points"].values() for k, v in p.items() if not isinstance(v, dict)]
    values += [
        x for p in result["points"].values() for v in p.values() if isinstance(v, dict) for x in v.values()
    ]
    return all(math.isfinite(v) for v in values)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (args,) = parse_config([BiasZeshelArguments], argv, default_config=str(DEFAULT_CONFIG))
    start = time.time()
    result = run(args)
    result["seconds"] = time.time() - start
    paths = write_outputs(result, Path(args.output_dir))
    print(f"finished in {result['seconds']:.1f}s; outputs: {paths['table']}, {paths['json']}")
    print(format_table(result))
    return result


if __name__ == "__main__":
    main()
