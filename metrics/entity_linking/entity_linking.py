"""`evaluate` module: entity-linking recall@k and normalized/unnormalized accuracy (Zhang & Stratos, 2021).

    import evaluate
    metric = evaluate.load("metrics/entity_linking")
    metric.compute(predictions=[["e1", "e7"], ...], references=["e1", ...], worlds=["lego", ...], k=64)

The numbers come from `hf_models.evaluation.linking_metrics` (the repo must be installed: `pip install -e .`).
"""

import datasets
import evaluate

from hf_models.evaluation import linking_metrics

_CITATION = """@inproceedings{zhang-stratos-2021-understanding,
  title = {Understanding Hard Negatives in Noise Contrastive Estimation},
  author = {Zhang, Wenzheng and Stratos, Karl}, booktitle = {NAACL-HLT}, year = {2021}}"""

_DESCRIPTION = """Top-k recall (micro-averaged over mentions), unnormalized accuracy (top-1 over all mentions) and
normalized accuracy (top-1 among mentions whose gold is in the candidates), both macro-averaged over worlds, and
the same per mention category. A mention whose gold is not among its predictions counts as wrong."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of ranked candidate-id lists (best first), one per mention.
    references: list of gold entity ids.
    worlds: optional list of world names (macro-averaging unit); default: one world.
    categories: optional list of mention categories (e.g. Zeshel's LOW_OVERLAP).
    k: the k of recall@k (default 64).
Returns: a dict with recall@1, recall@k, unnormalized_accuracy, normalized_accuracy, num_mentions and
    <category>/recall@k, <category>/accuracy.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EntityLinking(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions, references, worlds=None, categories=None, k=64):
        worlds = worlds if worlds is not None else ["default"] * len(references)
        return linking_metrics(references, predictions, worlds, categories, ks=(1, k))
