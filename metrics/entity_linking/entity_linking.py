"""`evaluate` module: entity-linking recall@k and normalized/unnormalized accuracy (Zhang & Stratos, 2021).

    import evaluate
    metric = evaluate.load("metrics/entity_linking")  # or a Hub Space / folder copy of this folder
    metric.compute(predictions=[["e1", "e7"], ...], references=["e1", ...], worlds=["lego", ...], k=64)

Whole pipeline (raw text in), one list of spans per document: ``"start:end"`` for mention detection (strict span
precision/recall/F1) or ``"start:end:entity_id"`` for end-to-end linking (span and entity right; ``"start:end:"`` is
NIL, not a prediction):

    metric = evaluate.load("metrics/entity_linking", "end_to_end")   # or "detection"
    metric.compute(predictions=[["0:4:e1", "9:14:e2"]], references=[["0:4:e1"]])

Self-contained: it needs only `evaluate` (and `datasets`, which evaluate installs), never this repository. The
numbers equal `hf_models.index.evaluation.linking_metrics` (a test checks it). All values are on a 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate

_CITATION = """@inproceedings{zhang-stratos-2021-understanding,
  title = {Understanding Hard Negatives in Noise Contrastive Estimation},
  author = {Zhang, Wenzheng and Stratos, Karl}, booktitle = {NAACL-HLT}, year = {2021}}"""

_DESCRIPTION = """Entity-linking metrics of Zhang & Stratos (2021), Section 6.1, on a 0-100 scale:
top-k recall (micro-averaged over mentions), unnormalized accuracy (top-1 correct over all mentions) and normalized
accuracy (top-1 correct among the mentions whose gold is among the top-64 predictions), both macro-averaged over
worlds, and recall / accuracy per mention category. A mention with an empty prediction list counts as wrong. A world
in which no mention has its gold among the top-64 predictions counts 0 in normalized accuracy (it is not dropped); their
number is returned as `worlds_without_retrieved_gold`."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of ranked candidate-id lists (best first), one per mention.
    references: list of gold entity ids.
    worlds: optional list of world names (the macro-averaging unit); default: one world.
    categories: optional list of mention categories (e.g. Zeshel's LOW_OVERLAP).
    k: the k of recall@k (default 64).
    normalized_k: normalized accuracy counts the mentions whose gold is in the top normalized_k (default 64, the
        paper's: the retriever's 64 candidates).
Returns: a dict (values 0-100) with recall@1, recall@k, unnormalized_accuracy, normalized_accuracy and
    <category>/recall@k, <category>/accuracy, plus the counts num_mentions, <category>/num_mentions and
    worlds_without_retrieved_gold.
"""


def linking_metrics(
    gold: Sequence[str],
    ranked: Sequence[Sequence[str]],
    worlds: Sequence[str],
    categories: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 64),
    normalized_k: int = 64,
) -> dict[str, float]:
    """Recall@k (micro), normalized/unnormalized accuracy (macro over worlds), and per-category numbers."""
    if not len(gold) == len(ranked) == len(worlds):
        raise ValueError(
            f"references ({len(gold)}), predictions ({len(ranked)}) and worlds ({len(worlds)}) differ"
        )
    if categories is not None and len(categories) != len(gold):
        raise ValueError(f"categories ({len(categories)}) and references ({len(gold)}) differ in length")
    n = len(gold)
    if n == 0:
        raise ValueError("no mentions to evaluate")
    hit_at = {k: [g in list(r)[:k] for g, r in zip(gold, ranked, strict=True)] for k in ks}
    top1 = [bool(r) and r[0] == g for g, r in zip(gold, ranked, strict=True)]
    # normalized accuracy counts a mention when its gold is among the retriever's top 64 (Section 6.1)
    retrieved = [g in list(r)[:normalized_k] for g, r in zip(gold, ranked, strict=True)]
    metrics = {f"recall@{k}": 100.0 * sum(h) / n for k, h in hit_at.items()}
    unnormalized, normalized, empty = [], [], 0
    for world in sorted(set(worlds)):
        idx = [i for i, w in enumerate(worlds) if w == world]
        unnormalized.append(sum(top1[i] for i in idx) / len(idx))
        found = [i for i in idx if retrieved[i]]
        normalized.append(sum(top1[i] for i in found) / len(found) if found else 0.0)
        empty += not found
    metrics["unnormalized_accuracy"] = 100.0 * sum(unnormalized) / len(unnormalized)
    metrics["normalized_accuracy"] = 100.0 * sum(normalized) / len(normalized)
    metrics["num_mentions"] = float(n)
    metrics["worlds_without_retrieved_gold"] = float(empty)
    if categories is not None:
        kmax = max(ks)
        for category in sorted(set(categories) - {""}):
            idx = [i for i, c in enumerate(categories) if c == category]
            metrics[f"{category}/recall@{kmax}"] = 100.0 * sum(hit_at[kmax][i] for i in idx) / len(idx)
            metrics[f"{category}/accuracy"] = 100.0 * sum(top1[i] for i in idx) / len(idx)
            metrics[f"{category}/num_mentions"] = float(len(idx))
    return metrics


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EntityLinking(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("default", *SPAN_TASKS):
            raise ValueError(f"unknown config {self.config_name!r}: use the default or one of {SPAN_TASKS}")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string"))  # spans per document
                    if self.config_name in SPAN_TASKS
                    else datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions, references, worlds=None, categories=None, k=64, normalized_k=64):
        for name, value in (("k", k), ("normalized_k", normalized_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.config_name in SPAN_TASKS:
            return span_metrics(predictions, references, linked=self.config_name == "end_to_end")
        worlds = worlds if worlds is not None else ["default"] * len(references)
        return linking_metrics(
            references, predictions, worlds, categories, ks=(1, k), normalized_k=normalized_k
        )


SPAN_TASKS = ("detection", "end_to_end")  # config names of the whole-pipeline metrics


def span_metrics(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]], linked: bool
) -> dict[str, float]:
    """Micro P/R/F1 (0-100) of ``"start:end[:entity_id]"`` spans per document; equals
    ``hf_models.index.evaluation.mention_detection_metrics`` / ``end_to_end_linking_metrics`` (a test checks it)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"references ({len(references)}) and predictions ({len(predictions)}) differ in number"
        )

    def parse(spans: Sequence[str]) -> set[tuple]:
        items = set()
        for item in spans:
            parts = str(item).split(":", 2)
            if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
                raise ValueError(
                    f"span {item!r} is not 'start:end' or 'start:end:entity_id' (integer offsets)"
                )
            start, end = int(parts[0]), int(parts[1])
            entity = parts[2] if len(parts) == 3 and parts[2] else None
            if not linked:
                items.add((start, end))
            elif entity is not None:  # NIL is not a prediction (nor a gold link)
                items.add((start, end, entity))
        return items

    correct = n_gold = n_predicted = 0
    for predicted, gold in zip(predictions, references, strict=True):
        predicted, gold = parse(predicted), parse(gold)
        correct, n_gold, n_predicted = (
            correct + len(predicted & gold),
            n_gold + len(gold),
            n_predicted + len(predicted),
        )
    precision = 100.0 * correct / n_predicted if n_predicted else 0.0
    recall = 100.0 * correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "num_gold": float(n_gold),
        "num_predicted": float(n_predicted),
        "num_correct": float(correct),
    }
