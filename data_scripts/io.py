"""The processed tables (docs/design.md) as `datasets` objects and their on-disk Parquet layout.

Layout written by :func:`write_processed` (and read by :func:`load_processed`)::

    OUT/
      README.md                    dataset card (YAML `configs:` so `load_dataset(OUT or repo, "mentions")` works)
      counts.json                  {"mentions": {split: {world: n}}, "entities": {world: n}}
      mentions/<split>.parquet     mention_id, world, left_context, mention, right_context, label_id, category,
                                   split (+ mention_input_ids, mention_attention_mask when featurized)
      entities/<world>.parquet     entity_id, world, title, text (+ entity_input_ids, entity_attention_mask)
      aliases.parquet              optional alias table (data_scripts/aliases.py); its mentions then have an
                                   `alias` column (the normalized alias key)

Plain Parquet: `datasets.load_dataset("parquet", data_files=processed_data_files(OUT)["mentions"])`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from .aliases import ALIASES_FILE, AliasTable, check_aliases, manifest_entry
from .validation import (
    ENTITY_COLUMNS,
    MENTION_COLUMNS,
    validate_tables,
)

logger = logging.getLogger(__name__)

MENTION_FEATURES = datasets.Features({name: datasets.Value("string") for name in MENTION_COLUMNS})
ENTITY_FEATURES = datasets.Features({name: datasets.Value("string") for name in ENTITY_COLUMNS})
MANIFEST_FILE = "manifest.json"
LAYOUT = ("mentions", "entities", "counts.json", "README.md", MANIFEST_FILE, ALIASES_FILE)


def mentions_dataset(rows: Iterable[dict[str, Any]], extra: tuple[str, ...] = ()) -> datasets.Dataset:
    """A mention `Dataset` with exactly the contract columns (all strings), plus the string columns ``extra``
    (e.g. ``alias``)."""
    names = (*MENTION_COLUMNS, *extra)
    columns: dict[str, list[str]] = {name: [] for name in names}
    for row in rows:
        for name in names:
            columns[name].append(str(row.get(name) or ""))
    features = datasets.Features({name: datasets.Value("string") for name in names})
    return datasets.Dataset.from_dict(columns, features=features)


def entities_dataset(rows: Iterable[dict[str, Any]], batch_size: int = 10_000) -> datasets.Dataset:
    """An entity `Dataset` built with bounded memory: rows are streamed into a memory-mapped Arrow file.

    The file lives in this process's temporary folder (:func:`table_folder`), deleted when the process exits;
    nothing is held in RAM.
    """
    path = table_folder() / f"entities-{uuid.uuid4().hex}.arrow"
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


_TABLE_FOLDER: Path | None = None
_TABLE_PREFIX = "hard_nce_el_tables-"


def table_folder() -> Path:
    """This process's folder for streamed Arrow tables: ``$TMPDIR/hard_nce_el_tables-PID-XXXX``, removed at exit.

    Folders of processes that no longer run (killed before their exit handler) are removed on first use.
    """
    global _TABLE_FOLDER
    if _TABLE_FOLDER is None or not _TABLE_FOLDER.exists():
        from hf_models.atomic import pid_alive

        root = Path(tempfile.gettempdir())
        for stale in root.glob(f"{_TABLE_PREFIX}*"):
            pid = stale.name.removeprefix(_TABLE_PREFIX).split("-")[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        _TABLE_FOLDER = Path(tempfile.mkdtemp(prefix=f"{_TABLE_PREFIX}{os.getpid()}-"))
        atexit.register(shutil.rmtree, _TABLE_FOLDER, True)
    return _TABLE_FOLDER


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
    """(mentions `DatasetDict` keyed by split, entities `Dataset` of every world) from a processed folder.

    The folder is checked first (:func:`check_processed`): its files must be the ones its manifest lists, with
    the recorded row counts and ids.
    """
    from hf_models.atomic import readable_folder

    directory = readable_folder(directory)
    check_processed(directory)
    files = processed_data_files(directory)
    mentions = datasets.load_dataset("parquet", data_files=files["mentions"])
    entities = datasets.load_dataset("parquet", data_files=files["entities"], split="train")
    return mentions, entities


def build_manifest(directory: str | Path, pretty_name: str) -> dict[str, Any]:
    """The ``manifest.json`` of a processed folder's Parquet files: per split / world its file, row count, sha256
    of the ordered ids and sha256 of the file's bytes (any change to any row is caught on load)."""
    from hf_models.atomic import file_sha256, ids_checksum

    directory = Path(directory)
    manifest: dict[str, Any] = {"format": 1, "dataset": pretty_name, "mentions": {}, "entities": {}}
    for kind, id_column in (("mentions", "mention_id"), ("entities", "entity_id")):
        for path in sorted((directory / kind).glob("*.parquet")):
            ids = _read_column(path, id_column, directory)
            manifest[kind][path.stem] = {
                "file": f"{kind}/{path.name}",
                "rows": len(ids),
                "ids_sha256": ids_checksum(ids),
                "sha256": file_sha256(path),
            }
    if (directory / ALIASES_FILE).exists():
        manifest["aliases"] = manifest_entry(directory)
    return manifest


def check_processed(directory: str | Path) -> None:
    """The Parquet files agree with ``manifest.json`` (files, row counts, sha256 of the ordered ids and, where
    recorded, of the file) or, in a folder written before manifests, with ``counts.json``. A mismatch raises
    :class:`~hf_models.atomic.CorruptFolderError` naming the folder and the file."""
    from hf_models.atomic import CorruptFolderError, file_sha256, ids_checksum, read_json

    directory = Path(directory)
    present = {p.relative_to(directory).as_posix() for p in directory.glob("*/*.parquet")}
    if (directory / MANIFEST_FILE).exists():
        manifest = read_json(directory / MANIFEST_FILE, directory)
        listed = {}
        for kind, id_column in (("mentions", "mention_id"), ("entities", "entity_id")):
            for name, spec in manifest.get(kind, {}).items():
                listed[spec["file"]] = (name, spec, id_column)
        for extra in sorted(present - set(listed)):
            raise CorruptFolderError(
                f"{directory}: {directory / extra} is not listed in {directory / MANIFEST_FILE} (a stale or "
                "foreign file): rewrite the dataset or remove the file"
            )
        for file, (name, spec, id_column) in listed.items():
            path = directory / file
            if file not in present:
                raise CorruptFolderError(
                    f"{directory}: {path} ({name!r}) is listed in {directory / MANIFEST_FILE} but missing"
                )
            ids = _read_column(path, id_column, directory)
            if len(ids) != spec["rows"] or ids_checksum(ids) != spec["ids_sha256"]:
                raise CorruptFolderError(
                    f"{directory}: {path} has {len(ids)} rows whose {id_column}s do not match "
                    f"{directory / MANIFEST_FILE} ({spec['rows']} rows and their ids checksum recorded)"
                )
            if "sha256" in spec and file_sha256(path) != spec["sha256"]:  # manifests before it: ids only
                raise CorruptFolderError(
                    f"{directory}: {path} does not match its checksum in {directory / MANIFEST_FILE} (a row was "
                    "changed since it was written): rewrite the dataset"
                )
        check_aliases(directory, manifest)
        return
    if not (directory / "counts.json").exists():
        logger.warning("%s has no %s or counts.json: its files cannot be checked", directory, MANIFEST_FILE)
        return
    counts = read_json(directory / "counts.json", directory)  # folders written before manifests
    expected = {f"mentions/{split}.parquet": sum(c.values()) for split, c in counts["mentions"].items()}
    expected.update({f"entities/{world}.parquet": n for world, n in counts["entities"].items()})
    for file in sorted(set(expected) | present):
        path = directory / file
        if file not in present or file not in expected:
            where = "missing" if file not in present else "not listed there"
            raise CorruptFolderError(
                f"{directory}: {path} disagrees with {directory / 'counts.json'} ({where})"
            )
        rows = _parquet_rows(path, directory)
        if rows != expected[file]:
            raise CorruptFolderError(
                f"{directory}: {path} has {rows} rows, {directory / 'counts.json'} records {expected[file]}"
            )


def _parquet_rows(path: Path, directory: Path) -> int:
    import pyarrow.parquet as pq

    from hf_models.atomic import CorruptFolderError

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as error:
        raise CorruptFolderError(f"{directory}: {path} is not a readable Parquet file ({error})") from error


def _read_column(path: Path, column: str, directory: Path) -> list[str]:
    import pyarrow.parquet as pq

    from hf_models.atomic import CorruptFolderError

    try:
        return pq.read_table(path, columns=[column]).column(column).to_pylist()
    except (OSError, KeyError, pa.ArrowException) as error:
        raise CorruptFolderError(f"{directory}: cannot read column {column!r} of {path} ({error})") from error


def _dataset_name(directory: Path) -> str | None:
    """The name of the processed dataset in ``directory`` (manifest, else the card's pretty_name), or None."""
    if (directory / MANIFEST_FILE).exists():
        try:
            return str(json.loads((directory / MANIFEST_FILE).read_text())["dataset"])
        except (ValueError, KeyError):
            return None
    card = directory / "README.md"
    if card.exists() and (directory / "counts.json").exists():
        match = re.search(r"^pretty_name: (.*)$", card.read_text(errors="replace"), re.MULTILINE)
        return match.group(1).strip() if match else None
    return None


def check_replaceable(output_dir: Path, pretty_name: str, overwrite: bool, shown: Path | None = None) -> None:
    """Refuse (unless ``overwrite``) to replace a folder holding another dataset or files that are no dataset.
    ``shown``: the folder the messages name (the user's ``--output_dir`` when ``output_dir`` is its kept previous
    version)."""
    if overwrite or not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise FileExistsError(f"--output_dir {shown or output_dir} is a file")
    if not any(output_dir.iterdir()):
        return
    name = _dataset_name(output_dir)
    if name is None:
        raise FileExistsError(
            f"--output_dir {shown or output_dir} is not empty and holds no processed dataset: refusing to replace it "
            "(pass --overwrite / overwrite=True to replace it)"
        )
    if name != pretty_name:
        raise FileExistsError(
            f"--output_dir {shown or output_dir} holds the dataset {name!r}, not {pretty_name!r}: refusing to replace "
            "it (pass --overwrite / overwrite=True to replace it)"
        )


def write_processed(
    mentions: datasets.DatasetDict,
    entities: datasets.Dataset,
    output_dir: str | Path,
    card: str | None = None,
    pretty_name: str = "Entity linking tables",
    overwrite: bool = False,
    aliases: AliasTable | None = None,
) -> dict[str, Any]:
    """Validate the tables, then write the Parquet layout + counts.json + manifest.json + README.md card
    (+ ``aliases.parquet``, the alias table, when given: its candidates must be entities of their world).

    Nothing is written before every check passed (:func:`validate_tables`); the folder is replaced atomically
    (:func:`~hf_models.atomic.atomic_folder`: a failure or a kill leaves the previous version), and files of the
    previous version that are not part of the layout (licences, attribution) are carried over. A folder holding
    another dataset (another ``pretty_name``) or non-dataset files is replaced only with ``overwrite``.
    Returns the counts.
    """
    from hf_models.atomic import atomic_folder, fault_point, readable_folder

    output_dir = Path(output_dir)
    previous = readable_folder(output_dir)  # its kept previous version after a kill between two renames
    check_replaceable(previous, pretty_name, overwrite, shown=output_dir)
    validate_tables(mentions, entities)
    if aliases is not None:
        aliases.validate(dict(zip(entities["entity_id"], entities["world"], strict=True)))
    counts = count_rows(mentions, entities)
    with atomic_folder(output_dir) as folder:
        for sub in ("mentions", "entities"):
            (folder / sub).mkdir()
        for split, dataset in mentions.items():
            file = f"mentions/{split}.parquet"
            dataset.to_parquet(str(folder / file))
            fault_point("processed:after_split")
        worlds = sorted(counts["entities"])
        world_column = entities["world"]
        for world in worlds:
            rows = [i for i, w in enumerate(world_column) if w == world] if len(worlds) > 1 else None
            subset = entities.select(rows) if rows is not None else entities
            file = f"entities/{world}.parquet"
            subset.to_parquet(str(folder / file))
        if aliases is not None:
            aliases.write(folder / ALIASES_FILE)
        (folder / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
        (folder / "README.md").write_text(dataset_card(counts, pretty_name=pretty_name, body=card or ""))
        (folder / MANIFEST_FILE).write_text(json.dumps(build_manifest(folder, pretty_name), indent=2) + "\n")
        if previous.is_dir():
            for path in previous.iterdir():
                if path.name not in LAYOUT and not (folder / path.name).exists():
                    copy = shutil.copytree if path.is_dir() else shutil.copy2
                    copy(path, folder / path.name)
    logger.info("wrote %s (%s)", output_dir, counts_summary(counts))
    return counts


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


# Hub license ids of the datasets the loaders write (by pretty_name). Anything else is declared "other": its card body
# names the sources (AIDA-CoNLL's Reuters text is not freely licensed).
DATASET_LICENSES = {
    "Zeshel entity linking": "cc-by-sa-3.0",
    "Glossary entity linking (FOLDOC + Jargon File)": "gfdl",
}


def dataset_card(counts: dict[str, Any], pretty_name: str, body: str = "") -> str:
    """A dataset card whose YAML `configs:` map the `mentions` and `entities` configs to the Parquet files; it
    declares the license (:data:`DATASET_LICENSES`, else "other") and the language (English)."""
    license_id = DATASET_LICENSES.get(pretty_name, "other")
    mention_files = "\n".join(
        f"  - split: {split}\n    path: mentions/{split}.parquet" for split in counts["mentions"]
    )
    entity_files = "\n".join(
        f"  - split: {world}\n    path: entities/{world}.parquet" for world in counts["entities"]
    )
    return (
        f"---\npretty_name: {pretty_name}\nlicense: {license_id}\nlanguage:\n- en\n"
        "task_categories:\n- text-retrieval\nconfigs:\n"
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
    """Upload a processed folder (Parquet + card) as a Hub dataset repo, after :func:`check_processed` (a corrupt
    folder is never uploaded); clear error when offline."""
    from hf_models.publishing.hub import push_folder

    check_processed(output_dir)
    return push_folder(
        output_dir, repo_id, token=token, private=private, repo_type="dataset", required_file="README.md"
    )
