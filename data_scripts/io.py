"""The processed tables (docs/design.md) as `datasets` objects and their on-disk Parquet layout.

Layout written by :func:`write_processed` (and read by :func:`load_processed`)::

    OUT/
      README.md                    dataset card (YAML `configs:` so `load_dataset(OUT or repo, "mentions")` works)
      counts.json                  {"mentions": {split: {world: n}}, "entities": {world: n}}
      mentions/<split>.parquet     mention_id, world, left_context, mention, right_context, label_id, category,
                                   split (+ mention_input_ids, mention_attention_mask when featurized)
      entities/<world>.parquet     entity_id, world, title, text (+ entity_input_ids, entity_attention_mask)

Plain Parquet: `datasets.load_dataset("parquet", data_files=processed_data_files(OUT)["mentions"])`.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

logger = logging.getLogger(__name__)

MENTION_COLUMNS = (
    "mention_id",
    "world",
    "left_context",
    "mention",
    "right_context",
    "label_id",
    "category",
    "split",
)
ENTITY_COLUMNS = ("entity_id", "world", "title", "text")
MENTION_FEATURES = datasets.Features({name: datasets.Value("string") for name in MENTION_COLUMNS})
ENTITY_FEATURES = datasets.Features({name: datasets.Value("string") for name in ENTITY_COLUMNS})
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def mentions_dataset(rows: Iterable[dict[str, Any]]) -> datasets.Dataset:
    """A mention `Dataset` with exactly the contract columns (all strings)."""
    columns: dict[str, list[str]] = {name: [] for name in MENTION_COLUMNS}
    for row in rows:
        for name in MENTION_COLUMNS:
            columns[name].append(str(row.get(name) or ""))
    return datasets.Dataset.from_dict(columns, features=MENTION_FEATURES)


def entities_dataset(rows: Iterable[dict[str, Any]], batch_size: int = 10_000) -> datasets.Dataset:
    """An entity `Dataset` built with bounded memory: rows are streamed into a memory-mapped Arrow file.

    The file lives in a fresh temporary folder (``$TMPDIR/hard_nce_el_tables``); nothing is held in RAM.
    """
    folder = Path(tempfile.gettempdir()) / "hard_nce_el_tables"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"entities-{uuid.uuid4().hex}.arrow"
    schema = ENTITY_FEATURES.arrow_schema
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append({name: str(row.get(name) or "") for name in ENTITY_COLUMNS})
            if len(batch) >= batch_size:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                batch = []
        writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
    return datasets.Dataset.from_file(str(path))


def count_rows(mentions: datasets.DatasetDict, entities: datasets.Dataset) -> dict[str, Any]:
    """Counts per split/world of mentions and per world of entities (what the dataset card shows)."""
    return {
        "mentions": {split: dict(sorted(Counter(ds["world"]).items())) for split, ds in mentions.items()},
        "entities": dict(sorted(Counter(entities["world"]).items())),
    }


def processed_data_files(directory: str | Path) -> dict[str, dict[str, list[str]]]:
    """`data_files` mappings for `load_dataset("parquet", ...)`: {"mentions": {split: [..]}, "entities": {"all": [..]}}."""
    directory = Path(directory)
    mention_files = sorted((directory / "mentions").glob("*.parquet"))
    entity_files = sorted((directory / "entities").glob("*.parquet"))
    if not mention_files or not entity_files:
        raise FileNotFoundError(
            f"{directory}: not a processed dataset (expected mentions/<split>.parquet and entities/<world>.parquet; "
            "build one with `python -m data_scripts.zeshel|kilt_aida|dictd ... --output_dir DIR`)"
        )
    return {
        "mentions": {path.stem: [str(path)] for path in mention_files},
        "entities": {"train": [str(path) for path in entity_files]},
    }


def load_processed(directory: str | Path) -> tuple[datasets.DatasetDict, datasets.Dataset]:
    """(mentions `DatasetDict` keyed by split, entities `Dataset` of every world) from a processed folder."""
    files = processed_data_files(directory)
    mentions = datasets.load_dataset("parquet", data_files=files["mentions"])
    entities = datasets.load_dataset("parquet", data_files=files["entities"], split="train")
    return mentions, entities


def write_processed(
    mentions: datasets.DatasetDict,
    entities: datasets.Dataset,
    output_dir: str | Path,
    card: str | None = None,
    pretty_name: str = "Entity linking tables",
) -> dict[str, Any]:
    """Write the Parquet layout + counts.json + README.md card; returns the counts."""
    output_dir = Path(output_dir)
    for sub in ("mentions", "entities"):
        (output_dir / sub).mkdir(parents=True, exist_ok=True)
        for stale in (output_dir / sub).glob("*.parquet"):
            stale.unlink()
    for split, dataset in mentions.items():
        _check_name(split, "split")
        dataset.to_parquet(str(output_dir / "mentions" / f"{split}.parquet"))
    worlds = entities.unique("world")
    for world in sorted(worlds):
        _check_name(world, "world")
        rows = [i for i, w in enumerate(entities["world"]) if w == world] if len(worlds) > 1 else None
        subset = entities.select(rows) if rows is not None else entities
        subset.to_parquet(str(output_dir / "entities" / f"{world}.parquet"))
    counts = count_rows(mentions, entities)
    (output_dir / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    (output_dir / "README.md").write_text(dataset_card(counts, pretty_name=pretty_name, body=card or ""))
    logger.info("wrote %s (%s)", output_dir, counts_summary(counts))
    return counts


def _check_name(name: str, kind: str) -> None:
    if not _SPLIT_NAME.match(name):
        raise ValueError(
            f"{kind} name {name!r} must match {_SPLIT_NAME.pattern} (it becomes a file/split name)"
        )


def counts_summary(counts: dict[str, Any]) -> str:
    mentions = ", ".join(f"{split}={sum(c.values())}" for split, c in counts["mentions"].items())
    return f"mentions: {mentions}; entities: {sum(counts['entities'].values())} in {len(counts['entities'])} worlds"


def counts_table(counts: dict[str, Any]) -> str:
    """Markdown table: one row per (split, world) with mentions and that world's entities."""
    lines = ["| split | world | mentions | entities |", "|---|---|---:|---:|"]
    for split, per_world in counts["mentions"].items():
        for world, n in per_world.items():
            lines.append(f"| {split} | {world} | {n} | {counts['entities'].get(world, 0)} |")
    listed = {w for per_world in counts["mentions"].values() for w in per_world}
    for world, n in counts["entities"].items():
        if world not in listed:
            lines.append(f"| (none) | {world} | 0 | {n} |")
    return "\n".join(lines)


def dataset_card(counts: dict[str, Any], pretty_name: str, body: str = "") -> str:
    """A dataset card whose YAML `configs:` map the `mentions` and `entities` configs to the Parquet files."""
    mention_files = "\n".join(
        f"  - split: {split}\n    path: mentions/{split}.parquet" for split in counts["mentions"]
    )
    entity_files = "\n".join(
        f"  - split: {world}\n    path: entities/{world}.parquet" for world in counts["entities"]
    )
    return (
        f"---\npretty_name: {pretty_name}\ntask_categories:\n- text-retrieval\nconfigs:\n"
        f"- config_name: mentions\n  default: true\n  data_files:\n{mention_files}\n"
        f"- config_name: entities\n  data_files:\n{entity_files}\n---\n\n"
        f"# {pretty_name}\n\n{body.strip()}\n\n"
        "## Layout\n\n"
        "`mentions/<split>.parquet`: mention_id, world, left_context, mention, right_context, label_id, category, "
        "split. `entities/<world>.parquet`: entity_id, world, title, text. Candidates of a mention are the "
        "entities of its world (zero-shot: the worlds of train, val and test are disjoint).\n\n"
        "```python\nfrom data_scripts.io import load_processed\nmentions, entities = load_processed(DIR)\n"
        "# or, plain Parquet:\nimport datasets\n"
        'datasets.load_dataset("parquet", data_files={"train": "DIR/mentions/train.parquet"})\n```\n\n'
        f"## Counts\n\n{counts_table(counts)}\n"
    )


def push_processed(
    output_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False
) -> str:
    """Upload a processed folder (Parquet + card) as a Hub dataset repo; clear error when offline."""
    from hf_models.hub import push_folder

    return push_folder(
        output_dir, repo_id, token=token, private=private, repo_type="dataset", required_file="README.md"
    )
