"""Model cards for saved retrievers/rerankers, built with ``huggingface_hub.ModelCardData``.

The YAML block carries ``pipeline_tag``, ``base_model``, ``datasets`` and a ``model-index`` with one eval result per
split and metric (recall@k, unnormalized / normalized accuracy; 0-100), so ``ModelCard.load(...).data.eval_results``
works on the Hub. The text describes the model kind that was trained (a retriever's score function and negatives,
or the reranker's fixed candidates), the input format carried by the model, and a usage snippet that needs only
``torch`` and ``transformers>=5`` (``trust_remote_code``). No reprs, enum names or local paths are written.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any

from ..modeling.input_format import InputFormat

CITATION = """@inproceedings{zhang-stratos-2021-understanding,
    title = "Understanding Hard Negatives in Noise Contrastive Estimation",
    author = "Zhang, Wenzheng and Stratos, Karl",
    booktitle = "Proceedings of NAACL-HLT 2021",
    year = "2021",
    url = "https://aclanthology.org/2021.naacl-main.86",
}"""

HYPERPARAMETERS = (
    "negatives",
    "hard_percent",
    "negative_pool",
    "mining_interval",
    "num_candidates",
    "share_candidates",
    "loss",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "optim",
    "freeze_word_embeddings",
    "group_batches_by_world",
    "seed",
)
KNOBS = (
    "direction",
    "num_query_vectors",
    "num_key_vectors",
    "query_reduction",
    "key_reduction",
    "attention",
    "similarity",
    "shared_encoder",
)
FORMULAS = {
    "dual": "E_1(x)^T F_1(y)",
    "poly": "F_1(y)^T C_m(x, y) (m learned codes over the mention tokens)",
    "multi": "max_{t <= m} E_1(x)^T F_t(y)",
    "som": "sum_t max_t' E_t(x)^T F_t'(y) over all tokens",
    "genpoly": "1_m^T F_{1:m}(y)^T C_m(x, y) (Appendix B)",
    "custom": "the general form of eq. (9) with the knobs below",
}
NEGATIVES = {
    "random": "uniformly random negatives, redrawn at the start of every epoch",
    "hard": "hard negatives sampled without replacement with p ∝ exp(s(x, y)) (eq. 8), re-mined with the current "
    "model at the start of every epoch",
    "mixed": "mixed negatives: {p:g}% hard (p ∝ exp(s), eq. 8), the rest uniformly random, re-mined with the "
    "current model at the start of every epoch",
    "topk": "the K-1 highest-scoring non-gold entities under the current model (Gillick et al., 2019), re-mined at "
    "the start of every epoch",
}
POOLS = {
    "world": "from the mention's own world",
    "training": "from all entities of the training worlds",
    "labeled": "from the gold entities of the training mentions of the mention's world",
    "alias": "from the gold and alias-table candidates of the training mentions of the mention's world",
}
METRIC = re.compile(r"^(recall@\d+|unnormalized_accuracy|normalized_accuracy)$")


def plain(value: Any) -> Any:
    """A value as a card shows it: enums by their value, everything else as is (str / number / bool)."""
    return value.value if isinstance(value, enum.Enum) else value


def hub_id(name: str) -> str | None:
    """``name`` when it looks like a Hub id (``org/name`` or ``name``), None for a local path."""
    if not name or name.startswith((".", "/", "~")) or Path(name).exists() or "\\" in name:
        return None
    return name if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) else None


def split_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{"val/recall@64": v}`` or ``{"eval_recall@64": v}`` (or already nested) -> ``{split: {metric: v}}``."""
    nested: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            nested.setdefault(key, {}).update({k: v for k, v in value.items() if isinstance(v, int | float)})
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if "/" in key:
            split, name = key.split("/", 1)
        elif key.startswith("eval_"):
            split, name = "eval", key[len("eval_") :]
        else:
            continue
        nested.setdefault(split, {})[name] = float(value)
    return nested


def is_reranker(config) -> bool:
    return getattr(config, "architecture", None) == "joint" or config.model_type == "nce-joint"


def card_data(config, metrics: dict[str, Any], dataset: str = "", base_model: str = ""):
    """The card's ``ModelCardData`` (model-index eval results from ``metrics``)."""
    from huggingface_hub import EvalResult, ModelCardData

    architecture = getattr(config, "architecture", None) or config.model_type
    reranker = is_reranker(config)
    task = "text-ranking" if reranker else "text-retrieval"  # the model-index task
    pipeline = "text-ranking" if reranker else "feature-extraction"  # a retriever encodes texts into vectors
    # a Hub dataset id as it is; a local folder by its name (a model-index dataset type, never a Hub link)
    dataset_name = (dataset if hub_id(dataset) else Path(dataset).name) if dataset else "entity-linking"
    eval_results = [
        EvalResult(
            task_type=task,
            task_name="Zero-shot entity linking",
            dataset_type=dataset_name,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=name,
            metric_name=name.replace("_", " "),
            metric_value=round(float(value), 4),
        )
        for split, values in sorted(split_metrics(metrics).items())
        for name, value in sorted(values.items())
        if METRIC.match(name)
    ]
    base = hub_id(base_model)
    return ModelCardData(
        model_name=f"{architecture}-{'reranker' if reranker else 'retriever'}"
        + (f"-{dataset_name}" if dataset else ""),
        library_name="transformers",
        pipeline_tag=pipeline,
        license="apache-2.0",
        language="en",
        tags=["entity-linking", "zero-shot", "nce", "hard-negatives", "custom_code"],
        base_model=base,
        datasets=[hub_id(dataset)] if hub_id(dataset) else None,
        eval_results=eval_results or None,
    )


def describe(config, args) -> str:
    """What was trained: the score function and the negatives (retriever) or the fixed candidates (reranker)."""
    k = getattr(args, "num_candidates", None)
    loss = (
        "eq. (10) (adjusted for the negatives' distribution)"
        if getattr(args, "loss", "nce") == "adjusted"
        else "eq. (11)"
    )
    if is_reranker(config):
        return (
            "A joint reranker (cross-encoder, Section 6.2): s(x, y) = w^T E_1([CLS] x [SEP] y) + b, with full "
            f"attention between mention and entity. Trained with the NCE loss of {loss} over K = {k} candidates "
            "per mention: the gold and the K-1 highest-ranked non-gold candidates of a fixed retriever (its "
            "candidate files), the same candidates at every epoch. It re-orders a retriever's candidates."
        )
    architecture = getattr(config, "architecture", "custom")
    text = f"A retriever with the **{architecture}** score function s(x, y) = {FORMULAS.get(architecture, FORMULAS['custom'])}"
    text += " (Zhang & Stratos, 2021, Section 4)."
    if getattr(config, "similarity", "dot") == "cosine":
        text += f" Vectors are L2-normalized and scaled by {config.similarity_scale:g} (cosine similarity: not in the paper)."
    if "mean" in (getattr(config, "query_reduction", ""), getattr(config, "key_reduction", "")):
        text += " Token vectors are mean-pooled (not in the paper)."
    negatives = plain(getattr(args, "negatives", "hard"))
    description = NEGATIVES.get(negatives, str(negatives)).format(
        p=float(getattr(args, "hard_percent", 50.0))
    )
    pool = POOLS.get(plain(getattr(args, "negative_pool", "world")), "")
    if getattr(args, "share_candidates", False):
        batch = getattr(args, "per_device_train_batch_size", None)
        shared = (
            f"shared across the batch of {batch}: each mention is also scored against the other mentions' "
            f"candidates, up to {batch} x K - 1 negatives (in-batch negatives: not in the paper)"
        )
    else:
        shared = "no in-batch negatives"
    text += (
        f" Trained with the NCE loss of {loss} over K = {k} candidates per mention (the gold and K-1 negatives, "
        f"{shared}); negatives: {description}{', ' + pool if pool else ''}."
    )
    if getattr(args, "group_batches_by_world", False):
        text += " Each training batch held mentions of one world (not in the paper)."
    if getattr(args, "freeze_word_embeddings", False):
        text += " The word-embedding tables were kept fixed during training (not in the paper)."
    return text


def usage(config) -> str:
    """The card's usage snippet: text-level API with the model's own input format (transformers + remote code)."""
    common = (
        "```python\n"
        "from transformers import AutoModel\n\n"
        'model = AutoModel.from_pretrained("PATH_OR_REPO", trust_remote_code=True).eval()\n'
        "fmt = model.input_format  # markers and max_length the model was trained with\n"
        'mention = fmt.mention_text("He met", "the Doctor", "on Gallifrey.")\n'
        'entities = [fmt.entity_text("The Doctor", "A Time Lord."), fmt.entity_text("Dalek", "A mutant.")]\n'
        "scores = model.score_texts(mention, entities)  # one score per entity\n"
    )
    if is_reranker(config):
        return common + "```\n"
    return common + (
        "mention_vectors = model.encode_mention_texts([mention])  # dual: [1, H]\n"
        "entity_vectors = model.encode_entity_texts(entities)  # dual: [2, H] (multi-m / som: a Representation)\n"
        "```\n"
    )


def input_format_section(config) -> str:
    fmt = InputFormat.from_config(config)
    start, end, title = fmt.markers
    length = f"{fmt.max_length} wordpieces" if fmt.max_length else "not recorded"
    side = " per side (mention window, entity)" if is_reranker(config) else " per mention and per entity"
    return (
        f"- mention: `left {start} mention {end} right` (`fmt.mention_text(left, mention, right)`); the model sees "
        f"the paper's window of `max_length` wordpieces centred on the mention;\n"
        f"- entity: `title {title} description` (`fmt.entity_text(title, text)`), cut on the right;\n"
        f"- `max_length`: {length}{side};\n"
        f"- the markers are special tokens of the saved tokenizer: tokenizing the text above gives their ids "
        f"(another tokenizer would split them and the scores would be wrong: `score_texts` checks it)."
    )


def render_model_card(config, args, metrics: dict[str, Any], dataset: str = "", base_model: str = "") -> str:
    """Markdown (with YAML metadata from :func:`card_data`) describing one saved model folder."""
    from huggingface_hub import ModelCard

    data = card_data(config, metrics, dataset, base_model)
    architecture = getattr(config, "architecture", None) or config.model_type
    kind = "reranker" if is_reranker(config) else "retriever"
    hyper = "\n".join(
        f"| {name} | {plain(getattr(args, name))} |"
        for name in HYPERPARAMETERS
        if hasattr(args, name)
        and (name != "hard_percent" or plain(getattr(args, "negatives", "")) == "mixed")
    )
    knobs = "\n".join(
        f"| {name} | {plain(getattr(config, name))} |" for name in KNOBS if hasattr(config, name)
    )
    nested = split_metrics(metrics)
    names = sorted({name for values in nested.values() for name in values if METRIC.match(name)})
    metric_rows = "\n".join(
        f"| {split} | " + " | ".join(f"{values[n]:.2f}" if n in values else "" for n in names) + " |"
        for split, values in sorted(nested.items())
    )
    metric_table = (
        f"| split | {' | '.join(names)} |\n|---|{'---|' * len(names)}\n{metric_rows}"
        if names
        else "Not evaluated."
    )
    base = hub_id(base_model)
    content = f"""---
{data.to_yaml()}
---

# {architecture} entity-linking {kind}

{describe(config, args)}

Training data: {hub_id(dataset) or (f"a local dataset ({Path(dataset).name})" if dataset else "not recorded")}. Base encoder: {f"[{base}](https://huggingface.co/{base})" if base else "a local checkpoint"}.

## Input format

{input_format_section(config)}

## Usage

Needs `torch` and `transformers>=5` only (the model code ships in this repository: `trust_remote_code=True`).

{usage(config)}
## Metrics

{metric_table}

Scale 0-100. recall@k: micro-averaged over mentions. Unnormalized accuracy (top-1 over all mentions) and
normalized accuracy (top-1 among the mentions whose gold is among the candidates) are macro-averaged over worlds
(Section 6.1); a world where no gold is retrieved counts 0 in normalized accuracy.

## Hyperparameters

| name | value |
|---|---|
{hyper}
"""
    if not is_reranker(config):
        content += f"\n| score knob | value |\n|---|---|\n{knobs}\n"
    content += f"\n## Citation\n\n```bibtex\n{CITATION}\n```\n"
    return str(ModelCard(content))


def write_model_card(
    folder: str | Path, config, args, metrics: dict[str, Any], dataset: str = "", base_model: str = ""
) -> Path:
    """Write ``folder/README.md`` atomically."""
    from ..atomic import atomic_write_text

    card = render_model_card(config, args, metrics, dataset=dataset, base_model=base_model)
    return atomic_write_text(Path(folder) / "README.md", card)
