"""EntityLinker: text in (plain, spans, marked, context records), linked entities out.

    linker = EntityLinker.from_pretrained("out/som", reranker="out/joint")
    linker.build_index("kb.jsonl")            # entity_id, title, text (+ world, aliases)
    linker.set_aliases("data/my_kb", prior_weight=1.0)   # optional alias table (candidates + log prior), see below
    linker.save_index("kb_index/")            # later: EntityLinker.from_pretrained("out/som").load_index("kb_index/")
    linker.link(["The Doctor landed on Gallifrey."], top_k=10)   # mentions detected over the index's titles

Per batch of texts: mentions are detected (texts without spans), all mentions are featurized and encoded together,
and each world's index is searched once. Entities are encoded by :class:`~hf_models.index.entity_index.EntityIndex`;
reranking goes through :func:`~hf_models.index.evaluation.rerank`. With an alias table, a mention whose alias key
has candidates is linked among those only (:mod:`hf_models.linking.alias_candidates`). See docs/linking.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoTokenizer

from data_scripts.aliases import AliasTable
from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer

from ..atomic import atomic_folder, readable_folder
from ..index.entity_index import EntityIndex
from ..modeling.input_format import InputFormat
from ..modeling.modeling_joint import JointRerankerModel
from ..modeling.modeling_retriever import RetrieverModel
from ..progress import tqdm
from . import alias_candidates as alias
from .detection import DictionaryDetector, TrainedDetector
from .fingerprints import check_fingerprints, model_fingerprint, tokenizer_fingerprint
from .inputs import ALIASES_COLUMN, TextInput, load_entity_table, parse_input, quiet_datasets
from .loading import (
    check_positions,
    config_markers,
    load_model,
    optional_tokenizer,
    read_entity_files,
    read_index_manifest,
    write_entity_files,
)
from .results import (
    LinkResult,
    MentionLink,
    candidate_probabilities,
    check_threshold,
    ranked_entities,
    short_description,
)

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
VECTORS_DIR = "vectors"
FORMAT_VERSION = 1
Detector = Callable[[Sequence[str]], list[list[tuple[int, int]]]]


class EntityLinker:
    """Detect mentions in text, retrieve (and optionally rerank) knowledge-base entities for each.

    Args:
        retriever: a trained :class:`~hf_models.modeling.modeling_retriever.RetrieverModel` (any architecture).
        tokenizer: the retriever's tokenizer (the marker tokens are registered on it).
        reranker: an optional :class:`~hf_models.modeling.modeling_joint.JointRerankerModel` for the top-k.
        reranker_tokenizer: the reranker's tokenizer (default: ``tokenizer``).
        max_length: the retriever's mention and entity input length: default the ``max_length`` its config records
            (else 128, logged); a different value is an explicit override (logged). The reranker uses its own.
        batch_size: texts per linking batch (also the encoder batch size).
        rerank_batch_size: mentions per reranker batch (each with its top-k candidates).
        detector: mention detector for texts without spans: None = a :class:`DictionaryDetector` over the
            index's titles and aliases, a :class:`TrainedDetector`, or any callable texts -> spans per text.
        nil_threshold: a mention whose best probability is below this is NIL (0 = never).
        index_kwargs: :class:`~hf_models.index.entity_index.EntityIndex` options (backend, faiss_kind, store_dtype,
            shortlist_size, chunk_size, encode_dtype, faiss_options).
    """

    def __init__(
        self,
        retriever: RetrieverModel,
        tokenizer,
        reranker: JointRerankerModel | None = None,
        reranker_tokenizer=None,
        *,
        max_length: int | None = None,
        batch_size: int = 64,
        rerank_batch_size: int = 4,
        show_progress: bool = True,
        detector: Detector | None = None,
        nil_threshold: float = 0.0,
        **index_kwargs: Any,
    ) -> None:
        self.markers = config_markers(retriever.config)
        prepare_tokenizer(tokenizer, self.markers)
        self.retriever = retriever.eval()
        self.tokenizer = tokenizer
        self.reranker = reranker.eval() if reranker is not None else None
        self.reranker_tokenizer = reranker_tokenizer or tokenizer
        self.reranker_markers = config_markers(reranker.config) if reranker is not None else self.markers
        if reranker is not None:
            prepare_tokenizer(self.reranker_tokenizer, self.reranker_markers)
        # the length the retriever was trained with (config.max_length); max_length= is an explicit, logged override
        self.max_length = InputFormat.from_config(retriever.config).resolve_max_length(
            max_length, 128, "retriever"
        )
        check_positions(retriever, self.max_length)
        self.batch_size = batch_size
        self.rerank_batch_size = rerank_batch_size
        self.show_progress = show_progress
        self.detector = detector
        self.nil_threshold = check_threshold(nil_threshold, "nil_threshold")
        self.index_kwargs = index_kwargs
        # what the caller chose (an index's recorded settings override these with a warning, the defaults silently)
        self._given = (
            {"max_length": max_length, **index_kwargs} if max_length is not None else dict(index_kwargs)
        )
        self.index = self._new_index(**index_kwargs)
        self.entities: dict[
            str, datasets.Dataset
        ] = {}  # world -> entity_id, title, text, aliases (row order)
        self._dictionary: dict[str | None, DictionaryDetector] = {}
        self._cache: dict[str, tuple[list[str], list[str], datasets.Dataset]] = {}
        self.aliases: AliasTable | None = None  # optional alias candidates + log prior (set_aliases)
        self.prior_weight = 0.0
        self._alias_rows: dict[str, dict[str, int]] = {}  # world -> entity id -> row, see world_rows

    @classmethod
    def from_pretrained(
        cls,
        retriever: str | Path,
        reranker: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        detector: str | Path | Detector | None = None,
        **kwargs: Any,
    ) -> EntityLinker:
        """Load a retriever folder/repo (with its tokenizer), optionally a joint reranker and a trained detector.

        ``detector``: None / ``"dictionary"`` (titles and aliases of the index), a saved
        :class:`~hf_models.modeling.modeling_mention_detector.MentionDetectorModel` folder, or a callable.
        ``kwargs`` go to the constructor (``max_length``, ``batch_size``, ``nil_threshold``, index options such as
        ``backend="faiss", faiss_kind="hnsw"``, ``store_dtype=torch.float16``, ``shortlist_size=256``).
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = load_model(retriever, RetrieverModel).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(retriever), trust_remote_code=False)
        joint = joint_tokenizer = None
        if reranker is not None:
            joint = load_model(reranker, JointRerankerModel).to(device)
            joint_tokenizer = optional_tokenizer(reranker) or tokenizer
        if isinstance(detector, (str, Path)):
            detector = (
                None if str(detector) == "dictionary" else TrainedDetector.from_pretrained(detector, device)
            )
        return cls(model, tokenizer, joint, joint_tokenizer, detector=detector, **kwargs)

    @property
    def reranker_max_length(self) -> int:
        """The reranker's input length per side: the one its config records, else the retriever's."""
        recorded = None if self.reranker is None else InputFormat.from_config(self.reranker.config).max_length
        return recorded or self.max_length

    def _new_index(self, **index_kwargs: Any) -> EntityIndex:
        return EntityIndex(
            self.retriever, batch_size=self.batch_size, show_progress=self.show_progress, **index_kwargs
        )

    # ------------------------------------------------------------------ index
    @property
    def worlds(self) -> list[str]:
        return list(self.index.worlds)

    def build_index(
        self,
        entities: datasets.Dataset | str | Path,
        aliases: AliasTable | str | Path | None = None,
        prior_weight: float = 0.0,
    ) -> EntityLinker:
        """Encode every entity of the table (one index per world), replacing any previous index (and alias
        table); ``aliases`` / ``prior_weight``: an optional alias table, see :meth:`set_aliases`."""
        table = load_entity_table(entities)
        with quiet_datasets():
            featurized = featurize_entities(table, self.tokenizer, self.max_length, markers=self.markers)
        self.index = self._new_index(**self.index_kwargs)
        self.entities, self._dictionary, self._cache = {}, {}, {}
        self.aliases, self.prior_weight = None, 0.0
        positions: dict[str, list[int]] = {}
        for position, world in enumerate(table["world"]):
            positions.setdefault(world, []).append(position)
        for world in tqdm(sorted(positions), desc="indexing worlds", disable=not self.show_progress):
            rows = featurized.select(positions[world])
            tensors = rows.with_format("torch", columns=["entity_input_ids", "entity_attention_mask"])[:]
            self.index.add_world(
                world, rows["entity_id"], tensors["entity_input_ids"], tensors["entity_attention_mask"]
            )
            self.entities[world] = rows.select_columns(["entity_id", "title", "text", ALIASES_COLUMN])
        logger.info("indexed %d entities in %d world(s)", len(table), len(self.entities))
        return self if aliases is None else self.set_aliases(aliases, prior_weight)

    def set_aliases(self, aliases: AliasTable | str | Path | None, prior_weight: float = 0.0) -> EntityLinker:
        """Link mentions whose alias key has candidates in their world among those candidates only, by score +
        ``prior_weight`` x log p(entity | alias) (:mod:`hf_models.linking.alias_candidates`); None removes the
        table. ``aliases``: an :class:`~data_scripts.aliases.AliasTable`, a processed folder with
        ``aliases.parquet``, or that file. Every candidate must be an entity of its world in the index."""
        self._require_index()
        self.aliases, self.prior_weight = alias.checked_aliases(aliases, prior_weight, self.entities)
        self._alias_rows = {}
        return self

    def manifest(self) -> dict[str, Any]:
        """What the index folder records about how it was built."""
        return {
            "format_version": FORMAT_VERSION,
            "model": model_fingerprint(self.retriever),
            "tokenizer": tokenizer_fingerprint(self.tokenizer, self.markers),
            "max_length": self.max_length,
            "backend": self.index.backend,
            "faiss_kind": self.index.faiss_kind,
            "shortlist_size": self.index.shortlist_size,
            "store_dtype": str(self.index.store_dtype).removeprefix("torch."),
            "worlds": {world: len(rows) for world, rows in self.entities.items()},
        }

    def save_index(self, directory: str | Path) -> Path:
        """Write ``manifest.json``, ``entities/world_NNNN.parquet`` and ``vectors/`` (see docs/linking.md).

        The folder is replaced atomically (:func:`~hf_models.atomic.atomic_folder`): a killed save leaves the
        previous index, never new entity rows next to old vectors.
        """
        self._require_index()
        folder = Path(directory)
        manifest = self.manifest()
        with atomic_folder(folder, replaces=MANIFEST_FILE) as temporary:
            manifest["entity_files"], manifest["entity_ids_sha256"] = write_entity_files(
                temporary, self.entities
            )
            self.index.save(temporary / VECTORS_DIR)
            if self.aliases is not None:
                manifest["aliases"] = alias.save_alias_table(self.aliases, temporary, self.prior_weight)
            (temporary / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        logger.info("saved the index of %d world(s) to %s", len(self.entities), folder)
        return folder

    def load_index(self, directory: str | Path) -> EntityLinker:
        """Load an index written by :meth:`save_index`, refusing one built by another model or tokenizer.

        The backend, FAISS kind, shortlist size, input length and alias table (checked by its sha256) recorded in
        the manifest are restored. A malformed manifest, vector, entity or alias file is an error naming that file.
        """
        folder = readable_folder(directory)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.exists():
            raise FileNotFoundError(
                f"{folder} is not an entity index ({MANIFEST_FILE} missing); build one with "
                "`python -m hf_models.linking build-index --retriever DIR --entities FILE --index DIR`"
            )
        saved = read_index_manifest(manifest_path, FORMAT_VERSION, self._given)
        check_fingerprints(saved["model"], model_fingerprint(self.retriever), "model", folder)
        check_fingerprints(
            saved["tokenizer"], tokenizer_fingerprint(self.tokenizer, self.markers), "tokenizer", folder
        )
        options, entity_files = saved["options"], saved["entity_files"]
        self.max_length = options.pop("max_length")
        self.index_kwargs.update(options, store_dtype=getattr(torch, saved["store_dtype"]))
        try:
            self.index = self._new_index(**self.index_kwargs).load(folder / VECTORS_DIR)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            if isinstance(error, FileNotFoundError | ValueError) and str(folder) in str(error):
                raise
            raise ValueError(f"{folder / VECTORS_DIR}: cannot load the entity vectors ({error})") from error
        self._dictionary, self._cache = {}, {}
        vector_ids = {world: entry.entity_ids for world, entry in self.index.worlds.items()}
        self.entities = read_entity_files(folder, entity_files, saved["entity_ids_sha256"], vector_ids)
        self.aliases, self.prior_weight = alias.load_alias_table(folder, saved["aliases"])
        self._alias_rows = {}
        return self

    def _require_index(self) -> None:
        if not self.index.worlds:
            raise ValueError("no entity index: call build_index(entities) or load_index(directory) first")

    def dictionary_detector(self, world: str | None = None) -> DictionaryDetector:
        """The default detector: the titles and aliases of one world's entities (None: of every world), built
        once per index and world."""
        if world not in self._dictionary:
            tables = [rows for name, rows in self.entities.items() if world is None or name == world]
            self._dictionary[world] = DictionaryDetector.from_entity_tables(tables, ALIASES_COLUMN)
        return self._dictionary[world]

    def _detect(self, texts: Sequence[TextInput], detector: Detector | None) -> list[list[tuple[int, int]]]:
        """Spans of texts without spans: the given detector, the linker's, or each world's dictionary."""
        detector = detector or self.detector
        if detector is not None:
            return [sorted(found) for found in detector([t.text for t in texts])]
        spans: list[list[tuple[int, int]]] = [[] for _ in texts]
        for i, text in enumerate(texts):
            spans[i] = self.dictionary_detector(text.world).find(text.text)
        return spans

    # ------------------------------------------------------------------ linking
    def link(
        self,
        inputs: Iterable[str | Mapping[str, Any]],
        top_k: int = 10,
        *,
        nil_threshold: float | None = None,
        detector: Detector | None = None,
        where: Sequence[str] | None = None,
    ) -> list[LinkResult]:
        """Link every mention of every input (see :mod:`hf_models.linking.inputs` for the accepted kinds).

        Returns one :class:`LinkResult` per input, in order: the text (markers removed), its world and its
        mentions, each with ``top_k`` entities best first (reranked when the linker has a reranker), their
        probabilities (softmax over those candidates) and NIL when the best is under ``nil_threshold``. With an
        alias table (:meth:`set_aliases`) a mention whose alias key has candidates gets those, re-scored with the
        prior (``source="alias"``); the others are searched in their whole world (``source="index"``).
        ``where`` names each input in error messages (default ``"input N"``).
        """
        if isinstance(inputs, (str, bytes, Mapping)):
            raise TypeError(
                "link() takes a list of inputs (strings or dicts); for one text call link([text])"
            )
        self._require_index()
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        threshold = (
            self.nil_threshold if nil_threshold is None else check_threshold(nil_threshold, "nil_threshold")
        )
        items = list(inputs)
        names = list(where) if where is not None else [f"input {i}" for i in range(len(items))]
        parsed = [self._resolve_world(parse_input(item, names[i]), names[i]) for i, item in enumerate(items)]
        if self.aliases is not None:
            for text, name in zip(parsed, names, strict=True):
                text.aliases = alias.explicit_aliases(text, name)
        results: list[LinkResult] = []
        batches = range(0, len(parsed), self.batch_size)
        for first in tqdm(batches, desc="linking", disable=not self.show_progress or len(batches) < 2):
            results.extend(
                self._link_texts(parsed[first : first + self.batch_size], top_k, threshold, detector)
            )
        return results

    def _resolve_world(self, text: TextInput, where: str) -> TextInput:
        worlds = self.worlds
        if text.world is None:
            if len(worlds) > 1:
                raise ValueError(
                    f"{where}: no 'world' given and the index has {len(worlds)} worlds {worlds[:5]}"
                )
            text.world = worlds[0]
        elif text.world not in self.index.worlds:
            raise ValueError(f"{where}: world {text.world!r} is not in the index (has {worlds[:5]})")
        return text

    @torch.no_grad()
    def _link_texts(
        self, texts: Sequence[TextInput], top_k: int, threshold: float, detector: Detector | None
    ) -> list[LinkResult]:
        undetected = [i for i, t in enumerate(texts) if t.spans is None]
        spans = [list(t.spans or []) for t in texts]
        if undetected:
            found = self._detect([texts[i] for i in undetected], detector)
            for i, text_spans in zip(undetected, found, strict=True):
                spans[i] = text_spans
        mentions = [(i, s, e) for i, text_spans in enumerate(spans) for s, e in text_spans]
        results = [LinkResult(text=t.text, world=t.world) for t in texts]
        if not mentions:
            return results
        rows = [
            {
                "left_context": texts[i].text[:s],
                "mention": texts[i].text[s:e],
                "right_context": texts[i].text[e:],
            }
            for i, s, e in mentions
        ]
        table = datasets.Dataset.from_list(rows)
        with quiet_datasets():
            featurized = featurize_mentions(table, self.tokenizer, self.max_length, markers=self.markers)
        tensors = featurized.with_format("torch", columns=["mention_input_ids", "mention_attention_mask"])[:]
        reps = self.index.encode_mentions(tensors["mention_input_ids"], tensors["mention_attention_mask"])
        by_world: dict[str, list[int]] = {}
        for position, (i, _, _) in enumerate(mentions):
            by_world.setdefault(texts[i].world, []).append(position)
        keys = alias.mention_keys(texts, mentions) if self.aliases is not None else None
        for world, positions in by_world.items():
            ids, titles, descriptions = self._columns(world)
            for part, ranking, source in alias.rank_world(self, world, positions, reps, rows, keys, top_k):
                probabilities = candidate_probabilities(ranking.scores)  # [M, k]
                for position, row, score, prob in zip(
                    part, ranking.rows.tolist(), ranking.scores.tolist(), probabilities.tolist(), strict=True
                ):
                    i, start, end = mentions[position]
                    ranked = ranked_entities(row, score, prob, world, ids, titles, descriptions)
                    nil = not ranked or ranked[0].probability < threshold
                    link = MentionLink(start, end, texts[i].text[start:end], ranked, nil, source)
                    results[i].mentions.append(link)
        for result in results:
            result.mentions.sort(key=lambda m: (m.start, m.end))
        return results

    def _columns(self, world: str) -> tuple[list[str], list[str], Callable[[int], str]]:
        """A world's ids and titles as lists (cached) and a short-description lookup by row."""
        if world not in self._cache:
            rows = self.entities[world]
            self._cache[world] = (list(rows["entity_id"]), list(rows["title"]), rows)
        ids, titles, rows = self._cache[world]
        return ids, titles, lambda r: short_description(titles[r], rows[r]["text"])
