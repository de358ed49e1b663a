"""Model cards for saved retrievers/rerankers: architecture, negatives, data, hyperparameters, metrics, citation."""

from __future__ import annotations

from pathlib import Path

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
    "num_candidates",
    "loss",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "optim",
    "seed",
)


def render_model_card(
    config, args, metrics: dict[str, float], dataset: str = "", base_model: str = ""
) -> str:
    """Markdown (with YAML metadata) describing one saved model folder."""
    architecture = getattr(config, "architecture", None) or config.model_type
    rows = "\n".join(f"| {k} | {getattr(args, k)} |" for k in HYPERPARAMETERS if hasattr(args, k))
    metric_rows = "\n".join(
        f"| {k} | {v:.2f} |" for k, v in sorted(metrics.items()) if isinstance(v, int | float)
    )
    knobs = {
        k: getattr(config, k)
        for k in (
            "direction",
            "num_query_vectors",
            "num_key_vectors",
            "query_reduction",
            "key_reduction",
            "attention",
            "shared_encoder",
        )
        if hasattr(config, k)
    }
    return f"""---
library_name: transformers
tags: [entity-linking, zero-shot, retrieval, nce, hard-negatives]
license: apache-2.0
{f"base_model: {base_model}" if base_model else ""}
{f"datasets: [{dataset}]" if dataset else ""}
---

# {architecture} entity-linking {"reranker" if architecture == "joint" else "retriever"} trained with {getattr(args, "negatives", "?")}-negative NCE

Score function: **{architecture}** — the general form of eq. (9) of Zhang & Stratos (2021) with
`{knobs}`. Trained by minimizing the NCE loss of eq. ({"10" if getattr(args, "loss", "nce") == "adjusted" else "11"})
over K = {getattr(args, "num_candidates", "?")} candidates (gold + K-1 negatives, no in-batch negatives); negatives:
**{getattr(args, "negatives", "?")}**{f" (p = {args.hard_percent:g}%)" if getattr(args, "negatives", "") == "mixed" else ""},
re-mined at the start of every epoch with the current model, from {"the mention's own world" if getattr(args, "negative_pool", "world") == "world" else "all entities of all training worlds"}.

Training data: {dataset or "see the training run"}. Base encoder: {base_model or "see config.json"}.

## Usage

```python
from transformers import AutoModel, AutoTokenizer
model = AutoModel.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")
```
Or link text with `hf_models.EntityLinker` / `python -m hf_models.link` from the recipe repo.

## Hyperparameters

| name | value |
|---|---|
{rows}

## Metrics

| metric | value |
|---|---|
{metric_rows or "| (not evaluated yet) | |"}

Recall is micro-averaged over mentions; accuracies are macro-averaged over worlds (Section 6.1).

## Citation

```bibtex
{CITATION}
```
"""


def write_model_card(
    folder: str | Path, config, args, metrics: dict[str, float], dataset: str = "", base_model: str = ""
) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(render_model_card(config, args, metrics, dataset=dataset, base_model=base_model))
    return path
