"""dictd glossaries (Debian dict-foldoc, dict-jargon) -> Zeshel layout or processed tables.

    python -m data_scripts.dictd --dictd_dir /usr/share/dictd --output_dir data/glossary_el [--format zeshel]

Entries are entities; every ``{cross-reference}`` whose target resolves to an entry of the same glossary is a
labeled mention in its real context (the citing entry). Resolution: the index headword, lower-cased with
whitespace collapsed, then simple plural fallbacks (``-ies`` -> ``-y``, ``-es``, ``-s``). Text: the entry with
braces removed and whitespace collapsed, starting with its title (Zeshel convention); a cross-reference becomes its
own whitespace tokens (``{hackers}.`` -> ``hackers .``) so spans are exact token ranges.

Worlds (zero-shot): the Jargon File is one world (``jargon_file``); FOLDOC entries are grouped by their first
subject tag (``<language>`` ...) into the worlds of :data:`FOLDOC_WORLDS`. FOLDOC entries that come from the
Jargon File (tag ``<jargon>``/``<humour>`` or a ``[{Jargon File}]`` citation) form ``foldoc_jargon`` and untagged
ones ``foldoc_misc``; neither is used by default, so Jargon File text does not leak across splits.

A mention's world is its TARGET's world (candidates are world-local); its context entry may belong to another
world but must belong to a world of the SAME split, so no text of a val/test world is ever seen in training.
Self-references are dropped. Each (split, world) keeps a seeded random sample of at most ``max_mentions``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from hf_models.progress import tqdm

logger = logging.getLogger(__name__)

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_REFERENCE = re.compile(r"\{([^{}]*)\}")
_TAG = re.compile(r"<([a-z][a-z ,\-]*)>")

# FOLDOC subject tag (first one of an entry) -> world.
FOLDOC_WORLDS: dict[str, tuple[str, ...]] = {
    "foldoc_languages": ("language", "human language"),
    "foldoc_networking": (
        "networking",
        "communications",
        "protocol",
        "messaging",
        "web",
        "chat",
        "hypertext",
        "security",
        "cryptography",
        "abuse",
    ),
    "foldoc_programming": (
        "programming",
        "algorithm",
        "theory",
        "mathematics",
        "logic",
        "data",
        "database",
        "file format",
        "compression",
        "testing",
        "library",
        "tool",
        "software",
        "application",
        "simulation",
        "parallel",
        "artificial intelligence",
        "graphics",
        "text",
        "spelling",
    ),
    "foldoc_hardware": (
        "hardware",
        "processor",
        "computer",
        "architecture",
        "storage",
        "electronics",
        "unit",
        "printer",
        "audio",
        "benchmark",
    ),
    "foldoc_systems": ("operating system", "file system", "filename extension"),
    "foldoc_organisations": (
        "company",
        "body",
        "person",
        "project",
        "publication",
        "business",
        "legal",
        "education",
        "job",
        "standard",
        "games",
        "event",
        "history",
    ),
}
_WORLD_OF_TAG = {tag: world for world, tags in FOLDOC_WORLDS.items() for tag in tags}

DEFAULT_SPLITS = {
    "train": ("foldoc_languages", "foldoc_networking", "foldoc_programming", "foldoc_hardware"),
    "val": ("foldoc_systems",),
    "test": ("foldoc_organisations", "jargon_file"),
}


@dataclass
class Entry:
    """One dictd entry (a block of the .dict file; several headwords may point to it)."""

    entry_id: str
    glossary: str
    title: str
    raw: str  # the body after the title line, braces intact
    world: str = ""
    tokens: list[str] = field(default_factory=list)
    references: list[tuple[int, int, str]] = field(
        default_factory=list
    )  # (start, end inclusive, target text)


def b64_number(text: str) -> int:
    """dictd's base64 offsets/lengths."""
    value = 0
    for char in text:
        value = value * 64 + _B64.index(char)
    return value


def normalize(term: str) -> str:
    return " ".join(term.split()).lower()


def read_glossary(dictd_dir: str | Path, name: str) -> tuple[list[Entry], dict[str, str]]:
    """(entries, headword -> entry id) of ``<name>.index`` + ``<name>.dict.dz`` (dictzip is gzip-compatible)."""
    directory = Path(dictd_dir)
    index_path, dict_path = directory / f"{name}.index", directory / f"{name}.dict.dz"
    for path in (index_path, dict_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found (apt-get install dict-{name})")
    with gzip.open(dict_path) as handle:
        data = handle.read()
    entries: dict[tuple[int, int], Entry] = {}
    lookup: dict[str, str] = {}
    for line_number, raw in enumerate(index_path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{index_path}:{line_number}: not UTF-8 (byte {error.start + 1})") from error
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{index_path}:{line_number}: expected 'headword<TAB>offset<TAB>length'")
        where = f"{index_path}:{line_number}"
        try:
            headword, offset, length = parts[0], b64_number(parts[1]), b64_number(parts[2])
        except ValueError as error:
            raise ValueError(
                f"{where}: offset/length {parts[1]!r}/{parts[2]!r} are not dictd base64"
            ) from error
        if headword.startswith("00-database") or headword.startswith("00database"):
            continue
        if offset + length > len(data) or length == 0:
            raise ValueError(
                f"{where}: entry {headword!r} at offset {offset}, length {length} lies outside {dict_path} "
                f"({len(data)} bytes uncompressed): the index does not belong to this .dict.dz"
            )
        key = (offset, length)
        if key not in entries:
            try:
                text = data[offset : offset + length].decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{where}: entry {headword!r} (offset {offset}, length {length} in {dict_path}) is not UTF-8 "
                    f"(byte {error.start}): wrong offsets or a damaged .dict.dz"
                ) from error
            title, _, body = text.strip("\n").partition("\n")
            entries[key] = Entry(f"{name}-{offset}", name, " ".join(title.split()), body)
        lookup.setdefault(normalize(headword), entries[key].entry_id)
    return list(entries.values()), lookup


def resolve(target: str, lookup: dict[str, str]) -> str | None:
    """Entry id of a cross-reference target (exact headword, then plural fallbacks)."""
    term = normalize(target)
    candidates = [term]
    if term.endswith("ies"):
        candidates.append(term[:-3] + "y")
    if term.endswith("s"):  # before "-es": "cases" is "case", not "cas"
        candidates.append(term[:-1])
    if term.endswith("es"):
        candidates.append(term[:-2])
    return next((lookup[c] for c in candidates if c in lookup), None)


def tokenize_entry(entry: Entry) -> None:
    """Fill `tokens` (title + body, braces removed) and `references` (token spans of every ``{...}``)."""
    tokens = entry.title.split()
    position = 0
    for match in _REFERENCE.finditer(entry.raw):
        tokens.extend(entry.raw[position : match.start()].split())
        inner = match.group(1).split()
        if inner:
            entry.references.append((len(tokens), len(tokens) + len(inner) - 1, match.group(1)))
            tokens.extend(inner)
        position = match.end()
    tokens.extend(entry.raw[position:].split())
    entry.tokens = tokens


def assign_world(entry: Entry) -> str:
    """The entry's world (see the module docstring)."""
    if entry.glossary != "foldoc":
        return f"{entry.glossary}_file" if entry.glossary == "jargon" else entry.glossary
    tag = _TAG.search(entry.raw)
    first = tag.group(1).split(",")[0].strip() if tag else None
    if first in ("jargon", "humour") or "[{Jargon File}]" in entry.raw:
        return "foldoc_jargon"
    return _WORLD_OF_TAG.get(first, "foldoc_misc") if first else "foldoc_misc"


def category(surface: str, title: str) -> str:
    """Zeshel's mention categories, by string overlap of surface and gold title."""
    surface, title = normalize(surface), normalize(title)
    if surface == title:
        return "HIGH_OVERLAP"
    if title.startswith(surface + " (") or title.startswith(surface + ","):
        return "MULTIPLE_CATEGORIES"
    if surface in title:
        return "AMBIGUOUS_SUBSTRING"
    return "LOW_OVERLAP"


@dataclass
class GlossaryCorpus:
    """All entries of the chosen glossaries with worlds and resolved cross-references."""

    entries: dict[str, Entry]
    links: list[tuple[str, int, str]]  # (context entry id, reference number, target entry id)
    unresolved: int


def build_corpus(dictd_dir: str | Path, glossaries: tuple[str, ...]) -> GlossaryCorpus:
    """Read, tokenize and link the glossaries (cross-references resolve inside their own glossary)."""
    entries: dict[str, Entry] = {}
    links: list[tuple[str, int, str]] = []
    unresolved = 0
    for name in glossaries:
        glossary_entries, lookup = read_glossary(dictd_dir, name)
        for entry in tqdm(glossary_entries, desc=f"{name} entries", leave=False):
            tokenize_entry(entry)
            entry.world = assign_world(entry)
            entries[entry.entry_id] = entry
            for number, (_, _, target) in enumerate(entry.references):
                target_id = resolve(target, lookup)
                if target_id is None:
                    unresolved += 1
                elif target_id != entry.entry_id:
                    links.append((entry.entry_id, number, target_id))
    return GlossaryCorpus(entries, links, unresolved)


def select_mentions(
    corpus: GlossaryCorpus, splits: dict[str, tuple[str, ...]], max_mentions: dict[str, int | None], seed: int
) -> dict[str, list[tuple[str, int, str]]]:
    """Links kept per split: target world in the split, context world in the same split, capped per world."""
    split_of = {world: split for split, worlds in splits.items() for world in worlds}
    by_world: dict[str, list[tuple[str, int, str]]] = {}
    for context_id, number, target_id in corpus.links:
        world = corpus.entries[target_id].world
        if world in split_of and split_of.get(corpus.entries[context_id].world) == split_of[world]:
            by_world.setdefault(world, []).append((context_id, number, target_id))
    rng = random.Random(seed)
    selected: dict[str, list[tuple[str, int, str]]] = {split: [] for split in splits}
    for world in sorted(by_world):
        links, cap = by_world[world], max_mentions.get(split_of[world])
        if cap is not None and len(links) > cap:
            links = sorted(rng.sample(links, cap))
        selected[split_of[world]].extend(links)
    return selected


def write_zeshel_layout(
    corpus: GlossaryCorpus,
    selected: dict[str, list[tuple[str, int, str]]],
    output_dir: str | Path,
    worlds: set[str],
) -> None:
    """documents/<world>.json (the `worlds` of the splits) and mentions/<split>.json, in Zeshel's field names,
    replacing ``output_dir`` atomically (a folder that holds no Zeshel layout is refused, never mixed into)."""
    from hf_models.atomic import atomic_folder

    with atomic_folder(output_dir, replaces="mentions") as folder:
        _write_zeshel_files(corpus, selected, folder, worlds)


def _write_zeshel_files(
    corpus: GlossaryCorpus,
    selected: dict[str, list[tuple[str, int, str]]],
    output_dir: Path,
    worlds: set[str],
) -> None:
    (output_dir / "documents").mkdir()
    (output_dir / "mentions").mkdir()
    for world in sorted(worlds):
        with open(output_dir / "documents" / f"{world}.json", "w", encoding="utf-8") as handle:
            for entry in corpus.entries.values():
                if entry.world == world:
                    record = {
                        "document_id": entry.entry_id,
                        "title": entry.title,
                        "text": " ".join(entry.tokens),
                    }
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    for split, links in selected.items():
        with open(output_dir / "mentions" / f"{split}.json", "w", encoding="utf-8") as handle:
            for context_id, number, target_id in links:
                context, target = corpus.entries[context_id], corpus.entries[target_id]
                start, end, _ = context.references[number]
                surface = " ".join(context.tokens[start : end + 1])
                record = {
                    "mention_id": f"{context_id}.{number}",
                    "context_document_id": context_id,
                    "label_document_id": target_id,
                    "corpus": target.world,
                    "start_index": start,
                    "end_index": end,
                    "text": surface,
                    "category": category(surface, target.title),
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def build_glossary_zeshel(
    dictd_dir: str | Path,
    output_dir: str | Path,
    glossaries: tuple[str, ...] = ("foldoc", "jargon"),
    splits: dict[str, tuple[str, ...]] | None = None,
    max_mentions: dict[str, int | None] | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """Write the Zeshel layout; returns a few statistics (entries, links, unresolved, mentions per split)."""
    splits = splits or DEFAULT_SPLITS
    corpus = build_corpus(dictd_dir, glossaries)
    selected = select_mentions(corpus, splits, max_mentions or {}, seed)
    worlds = {world for split_worlds in splits.values() for world in split_worlds}
    write_zeshel_layout(corpus, selected, output_dir, worlds & {e.world for e in corpus.entries.values()})
    stats = {
        "entries": len(corpus.entries),
        "resolved_links": len(corpus.links),
        "unresolved": corpus.unresolved,
    }
    stats.update({f"mentions_{split}": len(links) for split, links in selected.items()})
    logger.info(
        "glossary corpus: %s; worlds: %s", stats, dict(Counter(e.world for e in corpus.entries.values()))
    )
    return stats


def read_glossary_tables(
    dictd_dir: str | Path, skip_invalid: bool = False, context_window: int | None = 256, **kwargs
) -> tuple[datasets.DatasetDict, datasets.Dataset]:
    """Processed tables of the glossaries (through the Zeshel layout and :func:`data_scripts.zeshel.read_zeshel`)."""
    from .validation import InvalidDataError
    from .zeshel import read_zeshel

    with tempfile.TemporaryDirectory() as folder:
        build_glossary_zeshel(dictd_dir, folder, **kwargs)
        splits = tuple(kwargs.get("splits") or DEFAULT_SPLITS)
        try:
            mentions, entities = read_zeshel(
                folder, splits, skip_invalid=skip_invalid, context_window=context_window
            )
        except (
            InvalidDataError,
            FileNotFoundError,
        ) as error:  # it names a temporary file: say where it came from
            raise InvalidDataError(
                f"{dictd_dir}: the glossaries {kwargs.get('glossaries')} gave invalid tables ({error}). The file "
                "named is an intermediate Zeshel layout built from them; write it with `python -m data_scripts.dictd "
                "--format zeshel --output_dir DIR` to inspect it"
            ) from error
        return mentions, entities


def _parse_splits(items: list[str] | None) -> dict[str, tuple[str, ...]]:
    """``SPLIT=WORLD,WORLD`` items -> {split: worlds}; each split once, each world in one split (zero-shot)."""
    if not items:
        return DEFAULT_SPLITS
    splits: dict[str, tuple[str, ...]] = {}
    for item in items:
        split, _, worlds = item.partition("=")
        if not split or not worlds or "" in worlds.split(","):
            raise ValueError(f"--splits {item!r}: expected SPLIT=WORLD[,WORLD...]")
        if split in splits:
            raise ValueError(f"--splits names split {split!r} more than once")
        splits[split] = tuple(worlds.split(","))
    placed = [world for worlds in splits.values() for world in worlds]
    shared = sorted({world for world in placed if placed.count(world) > 1})
    if shared:
        raise ValueError(
            f"--splits puts world {shared[0]!r} in more than one split (splits must not share worlds)"
        )
    return splits


def _parse_caps(items: list[str] | None, splits: dict[str, tuple[str, ...]]) -> dict[str, int | None]:
    """``SPLIT=N`` items -> {split: cap}; each a split of ``splits`` with a cap >= 1."""
    caps: dict[str, int | None] = {}
    for item in items or []:
        split, _, value = item.partition("=")
        if split not in splits:
            raise ValueError(f"--max_mentions {item!r}: {split!r} is not a split (splits: {sorted(splits)})")
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--max_mentions {item!r}: the cap must be an integer >= 1")
        caps[split] = int(value)
    return caps


CARD = """Entity linking on real glossary text: the Free On-line Dictionary of Computing (FOLDOC, GFDL, editor
Denis Howe, https://foldoc.org) and the Jargon File 4.4.7 (public domain), from Debian's dict-foldoc and
dict-jargon. Entries are entities; their `{{cross-references}}` are the labeled mentions, in the citing entry's
context. Worlds are FOLDOC subject groups (`<language>`, `<networking>` ...) and the Jargon File; train, val and
test worlds are disjoint (zero-shot). A mention's world is its gold entity's world and its context comes from an
entry of the same split. Built by:

    {command}

See data_scripts/dictd.py for the exact rules (world map, plural fallback, sampling)."""


def main(argv: list[str] | None = None) -> None:
    from .cli import add_common_args, finish, setup_logging

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dictd_dir", default="/usr/share/dictd")
    parser.add_argument("--glossaries", nargs="+", default=["foldoc", "jargon"])
    parser.add_argument(
        "--splits", nargs="+", metavar="SPLIT=WORLD,WORLD", help="Default: see DEFAULT_SPLITS."
    )
    parser.add_argument("--max_mentions", nargs="+", metavar="SPLIT=N", help="Cap per world of each split.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context_window", type=int, default=256)
    parser.add_argument("--format", choices=("processed", "zeshel"), default="processed")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    try:
        splits = _parse_splits(args.splits)
        kwargs = {
            "glossaries": tuple(args.glossaries),
            "splits": splits,
            "max_mentions": _parse_caps(args.max_mentions, splits),
            "seed": args.seed,
        }
    except ValueError as error:
        parser.error(str(error))
    if args.context_window < 0:
        parser.error(f"--context_window must be >= 0 (0 = all), got {args.context_window}")
    if args.format == "zeshel":
        build_glossary_zeshel(args.dictd_dir, args.output_dir, **kwargs)
        return
    mentions, entities = read_glossary_tables(
        args.dictd_dir, args.skip_invalid, args.context_window, **kwargs
    )
    command = "python -m data_scripts.dictd " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:]
    )
    finish(
        args,
        mentions,
        entities,
        CARD.format(command=command),
        "Glossary entity linking (FOLDOC + Jargon File)",
    )


if __name__ == "__main__":
    main()
