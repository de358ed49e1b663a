"""The alias table of a processed folder: alias -> candidate entities (and their counts), per world.

An alias table maps a mention's **alias key** (a name, a lemma, an anchor text) to the entities it may refer to,
with optional counts (how often the alias linked to each candidate: anchor statistics, sense-tagged corpus counts).
It gives the standard candidate-set setting of entity linking (is the gold among the alias candidates?) and the
prior p(entity | alias).

Keys are compared after :func:`normalize` (Unicode NFKC, casefold, underscores read as spaces, whitespace runs
collapsed to one space, ends stripped): ``"New  York"``, ``"new_york"`` and ``"NEW YORK"`` are one key. The table stores normalized keys; the
mentions tables written by ``python -m data_scripts.jsonl`` hold each mention's normalized key in their ``alias``
column.

On disk: ``aliases.parquet`` at the top of a processed folder (columns ``alias`` string, ``world`` string,
``candidates`` list<string>, ``counts`` list<int64> or null), listed in ``manifest.json`` with its row count and
sha256 (:func:`check_aliases`, run by :func:`~data_scripts.io.check_processed` and :func:`load_aliases`)::

    from data_scripts.aliases import load_aliases
    table = load_aliases("data/my_kb")                   # None when the folder has no alias table
    ids, counts = table.candidates("noun", "Bank")        # ids in table order; counts None when not recorded
    priors = table.log_prior("noun", "bank")              # {entity_id: log p(entity | alias)}, add-one smoothed
    per_mention = table.mention_candidates(mentions["val"])  # list of candidate id lists, one per mention
"""

from __future__ import annotations

import logging
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

ALIASES_FILE = "aliases.parquet"
ALIAS_COLUMN = "alias"  # the mentions tables' column of normalized alias keys
ALIASES_SCHEMA = pa.schema(
    [
        pa.field("alias", pa.string(), nullable=False),
        pa.field("world", pa.string(), nullable=False),
        pa.field("candidates", pa.list_(pa.string()), nullable=False),
        pa.field("counts", pa.list_(pa.int64()), nullable=True),
    ]
)

Entry = tuple[list[str], list[int] | None]


def normalize(text: str) -> str:
    """The alias key of a string: Unicode NFKC, casefolded (NFKC again, so that normalizing a key keeps it),
    underscores read as spaces (WordNet lemmas and Wikipedia titles write multi-word names with them:
    ``point_out`` is the alias ``point out``), whitespace runs collapsed to one space, ends stripped.

    >>> normalize("  New_York  CITY ")
    'new york city'
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())  # idempotent
    return " ".join(folded.replace("_", " ").split())


@dataclass
class AliasTable:
    """(world, normalized alias) -> (candidate entity ids, counts or None), in the table's row order.

    Build one with :meth:`from_rows` (dicts with ``alias``, ``world``, ``candidates``, optional ``counts``) or read
    one with :func:`load_aliases`. Lookups normalize the key, so callers may pass raw surfaces or lemmas.
    """

    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> AliasTable:
        """A table from rows (``alias``, ``world``, ``candidates``, optional ``counts``); the aliases are normalized.
        A repeated (alias, world) after normalization raises ValueError (the converter reports it with file:line)."""
        table = cls()
        for row in rows:
            key = (str(row["world"]), normalize(str(row["alias"])))
            if key in table.entries:
                raise ValueError(f"alias table: alias {key[1]!r} of world {key[0]!r} is given twice")
            counts = row.get("counts")
            table.entries[key] = (
                [str(c) for c in row["candidates"]],
                None if counts is None else [int(c) for c in counts],
            )
        return table

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, item: tuple[str, str]) -> bool:
        """``(world, alias) in table`` (the alias is normalized)."""
        world, alias = item
        return (world, normalize(alias)) in self.entries

    @property
    def worlds(self) -> set[str]:
        return {world for world, _ in self.entries}

    def candidates(self, world: str, alias: str) -> Entry:
        """(candidate entity ids, their counts or None) of ``alias`` in ``world``; ``([], None)`` when the table
        has no such alias. The lists are copies in the table's order (e.g. most frequent first where the source
        orders them so; the first candidate is then the most-frequent-candidate baseline)."""
        ids, counts = self.entries.get((world, normalize(alias)), ([], None))
        return list(ids), None if counts is None else list(counts)

    def log_prior(self, world: str, alias: str, smoothing: float = 1.0) -> dict[str, float]:
        """``{entity_id: log p(entity | alias)}`` over the alias's candidates; empty when the alias is unknown.

        Additive smoothing: p(e | a) = (count(e) + smoothing) / (sum of the counts + smoothing * n) over the n
        candidates (add-one by default, so a zero count keeps a finite log prior). Without recorded counts the
        prior is uniform, log(1 / n). ``smoothing`` must be > 0. Entities outside the candidates have no prior:
        the caller decides (leave them out, or give them a floor).
        """
        if smoothing <= 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing}")
        ids, counts = self.entries.get((world, normalize(alias)), ([], None))
        if not ids:
            return {}
        if counts is None:
            return dict.fromkeys(ids, -math.log(len(ids)))
        total = sum(counts) + smoothing * len(ids)
        return {
            entity: math.log((count + smoothing) / total) for entity, count in zip(ids, counts, strict=True)
        }

    def mention_candidates(self, mentions: Any) -> list[list[str]]:
        """Candidate entity ids of each mention of a mentions table (a `datasets.Dataset` or a dict of columns):
        looked up by ``world`` and the ``alias`` column, or by the ``mention`` surface where there is none."""
        columns = mentions.column_names if hasattr(mentions, "column_names") else list(mentions)
        keys = mentions[ALIAS_COLUMN] if ALIAS_COLUMN in columns else mentions["mention"]
        return self.candidates_for(mentions["world"], keys)

    def candidates_for(self, worlds: Sequence[str], aliases: Sequence[str]) -> list[list[str]]:
        """Candidate entity ids for parallel lists of worlds and aliases (``[]`` where an alias is unknown)."""
        return [self.candidates(world, alias)[0] for world, alias in zip(worlds, aliases, strict=True)]

    def validate(self, world_of: Mapping[str, str]) -> None:
        """Every entry has candidates, no repeated one, each an entity of the entry's world (``world_of``: entity
        id -> world); counts, where given, are as many non-negative integers. ValueError names the alias."""
        for (world, alias), (ids, counts) in self.entries.items():
            where = f"alias table: alias {alias!r} of world {world!r}"
            if not alias:
                raise ValueError(f"{where}: empty alias")
            if not ids:
                raise ValueError(f"{where}: no candidates")
            if len(set(ids)) != len(ids):
                raise ValueError(f"{where}: a candidate is listed twice ({ids})")
            for entity in ids:
                if world_of.get(entity) != world:
                    found = world_of.get(entity)
                    detail = "is not an entity" if found is None else f"is an entity of world {found!r}"
                    raise ValueError(f"{where}: candidate {entity!r} {detail}")
            if counts is not None and (len(counts) != len(ids) or any(c < 0 for c in counts)):
                raise ValueError(f"{where}: counts {counts} must be {len(ids)} non-negative integers")

    def to_arrow(self) -> pa.Table:
        rows = [
            {"alias": alias, "world": world, "candidates": ids, "counts": counts}
            for (world, alias), (ids, counts) in self.entries.items()
        ]
        return pa.Table.from_pylist(rows, schema=ALIASES_SCHEMA)

    def write(self, path: str | Path) -> None:
        """Write ``aliases.parquet`` (the processed folder's writer lists it in the manifest)."""
        pq.write_table(self.to_arrow(), str(path))

    @classmethod
    def read(cls, path: str | Path) -> AliasTable:
        """Read an ``aliases.parquet`` file (unchecked: :func:`load_aliases` checks it against the manifest)."""
        table = pq.read_table(str(path))
        missing = [name for name in ALIASES_SCHEMA.names if name not in table.column_names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; has {table.column_names}")
        columns = [table.column(name).to_pylist() for name in ALIASES_SCHEMA.names]
        return cls.from_rows(
            {"alias": a, "world": w, "candidates": c, "counts": n}
            for a, w, c, n in zip(*columns, strict=True)
        )


def manifest_entry(folder: Path) -> dict[str, Any]:
    """The manifest's ``aliases`` entry of ``folder/aliases.parquet``: file, row count, sha256 of the bytes."""
    from hf_models.atomic import file_sha256

    path = folder / ALIASES_FILE
    return {"file": ALIASES_FILE, "rows": pq.ParquetFile(path).metadata.num_rows, "sha256": file_sha256(path)}


def check_aliases(
    directory: Path, manifest: Mapping[str, Any] | None, remedy: str = "rewrite the dataset"
) -> bool:
    """``aliases.parquet`` agrees with the manifest's ``aliases`` entry (listed, sha256 of the bytes); True when the
    folder has an alias table. An unlisted, missing or changed file raises
    :class:`~hf_models.atomic.CorruptFolderError`, a malformed entry ValueError; each message ends with ``remedy``
    (processed folders and linker indexes both keep their alias table this way)."""
    from hf_models.atomic import CorruptFolderError, file_sha256

    path, spec = directory / ALIASES_FILE, (manifest or {}).get("aliases")
    listing = directory / "manifest.json"
    if spec is None:
        if path.exists():
            raise CorruptFolderError(
                f"{directory}: {path} is not listed in {listing} (a stale or foreign file): {remedy}"
            )
        return False
    if (
        not isinstance(spec, Mapping)
        or spec.get("file") != ALIASES_FILE
        or not isinstance(spec.get("sha256"), str)
    ):
        raise ValueError(f"{listing}: invalid field 'aliases' {spec!r}: {remedy}")
    if not path.exists():
        raise CorruptFolderError(f"{directory}: {path} is listed in {listing} but missing: {remedy}")
    if file_sha256(path) != spec["sha256"]:
        raise CorruptFolderError(
            f"{directory}: {path} does not match its checksum in {listing} (changed since it was written): {remedy}"
        )
    return True


def load_aliases(directory: str | Path) -> AliasTable | None:
    """The alias table of a processed folder, checked against its manifest (:func:`check_aliases`), or None when
    the folder has none. Only ``aliases.parquet`` is checked here; :func:`~data_scripts.io.load_processed` checks
    the whole folder."""
    from hf_models.atomic import read_json, readable_folder

    directory = readable_folder(directory)
    manifest_path = directory / "manifest.json"
    manifest = read_json(manifest_path, directory) if manifest_path.exists() else None
    if not check_aliases(directory, manifest):
        return None
    table = AliasTable.read(directory / ALIASES_FILE)
    logger.info("%s: %d aliases in %d world(s)", directory / ALIASES_FILE, len(table), len(table.worlds))
    return table


def alias_coverage(table: AliasTable, mentions: Any) -> dict[str, float]:
    """How the alias table covers a mentions table: the share of mentions whose key it knows, the share whose gold
    is among the candidates (the ceiling of alias-restricted accuracy), mean candidates of known keys, and the
    most-frequent-candidate accuracy (first candidate = gold)."""
    candidates = table.mention_candidates(mentions)
    golds = list(mentions["label_id"])
    known = [c for c in candidates if c]
    n = max(len(golds), 1)
    return {
        "mentions": len(golds),
        "known": len(known) / n,
        "gold_in_candidates": sum(g in c for g, c in zip(golds, candidates, strict=True)) / n,
        "mean_candidates": sum(map(len, known)) / max(len(known), 1),
        "first_candidate_accuracy": sum(bool(c) and c[0] == g for g, c in zip(golds, candidates, strict=True))
        / n,
    }
