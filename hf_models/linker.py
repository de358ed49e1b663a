"""Link raw mentions to a knowledge base: retrieve with a trained retriever, optionally rerank with a joint model.

    linker = EntityLinker.from_pretrained("out/som", reranker="out/joint")
    linker.build_index("kb.jsonl")            # entity_id, title, text (+ world)
    linker.save_index("kb_index/")            # later: EntityLinker.from_pretrained("out/som").load_index("kb_index/")
    linker.link(["He met [START_ENT] the Doctor [END_ENT] on Gallifrey."], top_k=64)

Entities are encoded once by :class:`~hf_models.entity_index.EntityIndex` (the one component shared with mining
and evaluation); reranking goes through :func:`~hf_models.evaluation.rerank`. The index folder records which model
and tokenizer built it (:func:`model_fingerprint`, :func:`tokenizer_fingerprint`); :meth:`EntityLinker.load_index`
refuses an index built by anything else. See docs/linking.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from data_scripts.featurize import DEFAULT_MARKERS, featurize_entities, featurize_mentions, prepare_tokenizer
from data_scripts.kilt_aida import END, START, split_markers

from .entity_index import EntityIndex
from .evaluation import Ranking, rerank
from .modeling_joint import JointRerankerModel
from .modeling_retriever import RetrieverModel
from .tables import EntityTable, MentionTable

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
ENTITIES_DIR = "entities"
VECTORS_DIR = "vectors"
FORMAT_VERSION = 1
DEFAULT_WORLD = "default"
# Config entries that say nothing about the function the model computes.
_VOLATILE_CONFIG_KEYS = (
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "auto_map",
    "architectures",
)


class IndexMismatchError(ValueError):
    """The saved index was built by another model or tokenizer than the linker's."""


@dataclass
class LinkedEntity:
    """One ranked entity of a mention: its id, title, world and score (retriever, or reranker when given)."""

    entity_id: str
    title: str
    score: float
    world: str


@dataclass
class MentionInput:
    """A mention split into its left context, surface and right context, plus its world (None = default)."""

    left_context: str
    mention: str
    right_context: str
    world: str | None = None


# ---------------------------------------------------------------------- fingerprints
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_fingerprint(model: torch.nn.Module, values_per_tensor: int = 256) -> dict[str, Any]:
    """Identify a model: its class, its config (volatile keys dropped) and a sha256 of its weights.

    The weights hash covers every tensor's name, shape and ``values_per_tensor`` evenly spaced values (float32),
    which tells apart any two trainings or initialisations without hashing every weight.
    """
    config = {k: v for k, v in model.config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        picks = torch.linspace(0, max(flat.numel() - 1, 0), min(values_per_tensor, flat.numel())).long()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(flat[picks.to(flat.device)].to("cpu", torch.float32).numpy().tobytes())
    return {
        "class": type(model).__name__,
        "name_or_path": str(
            getattr(model, "name_or_path", "") or model.config.to_dict().get("_name_or_path", "")
        ),
        "architecture": getattr(model.config, "architecture", None),
        "config_sha256": _sha256(json.dumps(config, sort_keys=True, default=str).encode()),
        "weights_sha256": digest.hexdigest(),
    }


def tokenizer_fingerprint(tokenizer, markers: Sequence[str] = DEFAULT_MARKERS) -> dict[str, Any]:
    """Identify a tokenizer: name, vocabulary size and sha256, and the ids of the marker/[CLS]/[SEP] tokens."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = {token: tokenizer.convert_tokens_to_ids(token) for token in markers}
    special.update(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id, pad=tokenizer.pad_token_id)
    return {
        "class": type(tokenizer).__name__,
        "name_or_path": str(tokenizer.name_or_path),
        "vocab_size": len(tokenizer),
        "vocab_sha256": _sha256(json.dumps(vocab).encode()),
        "special_tokens": special,
        "lowercase": bool(getattr(tokenizer, "do_lower_case", False)),
    }


_MODEL_KEYS = ("class", "config_sha256", "weights_sha256")
_TOKENIZER_KEYS = ("vocab_size", "vocab_sha256", "special_tokens")


def _describe(fingerprint: dict[str, Any], keys: Sequence[str]) -> str:
    name = fingerprint.get("name_or_path") or "?"
    fields = ", ".join(
        f"{k}={str(fingerprint.get(k))[:12] if k.endswith('sha256') else fingerprint.get(k)}" for k in keys
    )
    return f"{name!r} ({fields})"


def check_fingerprints(saved: dict[str, Any], current: dict[str, Any], what: str, index_dir: Path) -> None:
    """Raise :class:`IndexMismatchError` naming both sides when ``saved`` and ``current`` differ."""
    keys = _MODEL_KEYS if what == "model" else _TOKENIZER_KEYS
    differing = [k for k in keys if saved.get(k) != current.get(k)]
    if differing:
        raise IndexMismatchError(
            f"the index at {index_dir} was built by {what} {_describe(saved, keys)}, but this linker's {what} is "
            f"{_describe(current, keys)} (differs in {differing}). Rebuild it with "
            "`python -m hf_models.link build-index` (or EntityLinker.build_index) using this model."
        )


# ---------------------------------------------------------------------- inputs
ENTITY_COLUMNS = ("entity_id", "title", "text", "world")


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence `datasets`' per-call progress bars (the linker shows its own)."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def load_entity_table(entities: datasets.Dataset | str | Path) -> datasets.Dataset:
    """An entity table (entity_id, title, text, optional world) from a Dataset, a .jsonl/.json or .parquet file."""
    if isinstance(entities, (str, Path)):
        path = Path(entities)
        if not path.exists():
            raise FileNotFoundError(f"entity file {path} does not exist")
        builder = "parquet" if path.suffix == ".parquet" else "json"
        if builder == "json" and path.stat().st_size == 0:
            raise ValueError(f"empty knowledge base: {path} holds no entities")
        with quiet_datasets():
            entities = datasets.load_dataset(builder, data_files=str(path), split="train")
    if len(entities) == 0:
        raise ValueError("empty knowledge base: the entity table has 0 rows; nothing to index")
    missing = [c for c in ("entity_id", "text") if c not in entities.column_names]
    if missing:
        raise ValueError(f"entity table lacks column(s) {missing}; has {entities.column_names}")
    if "title" not in entities.column_names:
        entities = entities.add_column("title", [""] * len(entities))
    if "world" not in entities.column_names:
        entities = entities.add_column("world", [DEFAULT_WORLD] * len(entities))
    with quiet_datasets():
        return entities.map(
            lambda row: {k: str(row[k] if row[k] is not None else "") for k in ENTITY_COLUMNS},
            desc="normalise entities",
        )


def parse_mention(item: str | Mapping[str, Any], position: int) -> MentionInput:
    """A mention from ``"left [START_ENT] mention [END_ENT] right"`` (KILT) or a dict with ``left_context``,
    ``mention``, ``right_context`` (or an ``input``/``text`` string with the markers) and optional ``world``."""
    world = None
    text = item
    if isinstance(item, Mapping):
        world = item.get("world")
        if "mention" in item:
            return MentionInput(
                str(item.get("left_context", item.get("left", "")) or ""),
                _non_empty(str(item["mention"] or ""), position),
                str(item.get("right_context", item.get("right", "")) or ""),
                world,
            )
        text = item.get("input", item.get("text"))
    parts = split_markers(text) if isinstance(text, str) else None
    if parts is None:
        shown = text if not isinstance(text, str) else text[:80]
        raise ValueError(
            f"mention {position}: no marked span; wrap the mention as 'left {START} mention {END} right' or give "
            f"a dict with left_context/mention/right_context (got {shown!r})"
        )
    return MentionInput(parts[0], _non_empty(parts[1], position), parts[2], world)


def _non_empty(surface: str, position: int) -> str:
    if not surface.strip():
        raise ValueError(f"mention {position}: the marked span is empty")
    return surface


# ---------------------------------------------------------------------- the linker
class EntityLinker:
    """Retrieve (and optionally rerank) knowledge-base entities for mentions in context.

    Args:
        retriever: a trained :class:`~hf_models.modeling_retriever.RetrieverModel` (any architecture).
        tokenizer: the retriever's tokenizer (the marker tokens are registered on it).
        reranker: an optional :class:`~hf_models.modeling_joint.JointRerankerModel` for the top-k.
        reranker_tokenizer: the reranker's tokenizer (default: ``tokenizer``).
        max_length: mention and entity input length (the paper: 128).
        batch_size: mentions per retrieval batch (also the encoder batch size).
        rerank_batch_size: mentions per reranker batch (each with its top-k candidates).
        index_kwargs: :class:`~hf_models.entity_index.EntityIndex` options (backend, faiss_kind, store_dtype,
            shortlist_size, chunk_size, encode_dtype, faiss_options).
    """

    def __init__(
        self,
        retriever: RetrieverModel,
        tokenizer,
        reranker: JointRerankerModel | None = None,
        reranker_tokenizer=None,
        *,
        max_length: int = 128,
        batch_size: int = 64,
        rerank_batch_size: int = 4,
        show_progress: bool = True,
        **index_kwargs: Any,
    ) -> None:
        prepare_tokenizer(tokenizer)
        self.retriever = retriever.eval()
        self.tokenizer = tokenizer
        self.reranker = reranker.eval() if reranker is not None else None
        self.reranker_tokenizer = reranker_tokenizer or tokenizer
        if reranker is not None:
            prepare_tokenizer(self.reranker_tokenizer)
        self.max_length = max_length
        self.batch_size = batch_size
        self.rerank_batch_size = rerank_batch_size
        self.show_progress = show_progress
        self.index_kwargs = index_kwargs
        self.index = self._new_index(**index_kwargs)
        self.entities: dict[str, datasets.Dataset] = {}  # world -> entity_id, title, text (index row order)

    @classmethod
    def from_pretrained(
        cls,
        retriever: str | Path,
        reranker: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> EntityLinker:
        """Load a retriever folder/repo (with its tokenizer) and optionally a joint reranker folder/repo.

        ``kwargs`` go to the constructor (``max_length``, ``batch_size``, index options such as
        ``backend="faiss", faiss_kind="hnsw"``, ``store_dtype=torch.float16``, ``shortlist_size=256``).
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = load_model(retriever, RetrieverModel).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(retriever), trust_remote_code=False)
        joint = joint_tokenizer = None
        if reranker is not None:
            joint = load_model(reranker, JointRerankerModel).to(device)
            joint_tokenizer = _optional_tokenizer(reranker) or tokenizer
        return cls(model, tokenizer, joint, joint_tokenizer, **kwargs)

    def _new_index(self, **index_kwargs: Any) -> EntityIndex:
        return EntityIndex(
            self.retriever, batch_size=self.batch_size, show_progress=self.show_progress, **index_kwargs
        )

    # ------------------------------------------------------------------ index
    @property
    def worlds(self) -> list[str]:
        return list(self.index.worlds)

    def build_index(self, entities: datasets.Dataset | str | Path) -> EntityLinker:
        """Encode every entity of the table (one index per world), replacing any previous index."""
        table = load_entity_table(entities)
        with quiet_datasets():
            featurized = featurize_entities(table, self.tokenizer, self.max_length)
        self.index = self._new_index(**self.index_kwargs)
        self.entities = {}
        positions: dict[str, list[int]] = {}
        for position, world in enumerate(table["world"]):
            positions.setdefault(world, []).append(position)
        for world in tqdm(sorted(positions), desc="indexing worlds", disable=not self.show_progress):
            rows = featurized.select(positions[world])
            tensors = rows.with_format("torch", columns=["entity_input_ids", "entity_attention_mask"])[:]
            self.index.add_world(
                world, rows["entity_id"], tensors["entity_input_ids"], tensors["entity_attention_mask"]
            )
            self.entities[world] = rows.select_columns(["entity_id", "title", "text"])
        logger.info("indexed %d entities in %d world(s)", len(table), len(self.entities))
        return self

    def manifest(self) -> dict[str, Any]:
        """What the index folder records about how it was built."""
        return {
            "format_version": FORMAT_VERSION,
            "model": model_fingerprint(self.retriever),
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "max_length": self.max_length,
            "backend": self.index.backend,
            "faiss_kind": self.index.faiss_kind,
            "shortlist_size": self.index.shortlist_size,
            "store_dtype": str(self.index.store_dtype).removeprefix("torch."),
            "worlds": {world: len(rows) for world, rows in self.entities.items()},
        }

    def save_index(self, directory: str | Path) -> Path:
        """Write ``manifest.json``, ``entities/world_NNNN.parquet`` and ``vectors/`` (see docs/linking.md)."""
        self._require_index()
        folder = Path(directory)
        (folder / ENTITIES_DIR).mkdir(parents=True, exist_ok=True)
        manifest = self.manifest()
        manifest["entity_files"] = {}
        for number, (world, rows) in enumerate(self.entities.items()):
            name = f"{ENTITIES_DIR}/world_{number:04d}.parquet"
            with quiet_datasets():
                rows.to_parquet(str(folder / name))
            manifest["entity_files"][world] = name
        self.index.save(folder / VECTORS_DIR)
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        logger.info("saved the index of %d world(s) to %s", len(self.entities), folder)
        return folder

    def load_index(self, directory: str | Path) -> EntityLinker:
        """Load an index written by :meth:`save_index`, refusing one built by another model or tokenizer.

        The backend, FAISS kind, shortlist size and input length recorded in the manifest are restored.
        """
        folder = Path(directory)
        if not (folder / MANIFEST_FILE).exists():
            raise FileNotFoundError(
                f"{folder} is not an entity index ({MANIFEST_FILE} missing); build one with "
                "`python -m hf_models.link build-index --retriever DIR --entities FILE --index DIR`"
            )
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        check_fingerprints(manifest["model"], model_fingerprint(self.retriever), "model", folder)
        check_fingerprints(manifest["tokenizer"], tokenizer_fingerprint(self.tokenizer), "tokenizer", folder)
        self.max_length = manifest["max_length"]
        self.index_kwargs.update(
            backend=manifest["backend"],
            faiss_kind=manifest["faiss_kind"],
            shortlist_size=manifest["shortlist_size"],
            store_dtype=getattr(torch, manifest["store_dtype"]),
        )
        self.index = self._new_index(**self.index_kwargs).load(folder / VECTORS_DIR)
        with quiet_datasets():
            self.entities = {
                world: datasets.Dataset.from_parquet(str(folder / name))
                for world, name in manifest["entity_files"].items()
            }
        return self

    def _require_index(self) -> None:
        if not self.index.worlds:
            raise ValueError("no entity index: call build_index(entities) or load_index(directory) first")

    # ------------------------------------------------------------------ linking
    def link(self, mentions: Iterable[str | Mapping[str, Any]], top_k: int = 64) -> list[list[LinkedEntity]]:
        """Rank the knowledge base's entities for each mention, best first (top_k per mention).

        Each mention is searched in its own ``world`` (optional when the index has one world). With a reranker,
        the retriever's top_k are re-sorted by the joint model and carry its scores.
        """
        self._require_index()
        parsed = [self._resolve_world(parse_mention(item, i), i) for i, item in enumerate(mentions)]
        results: list[list[LinkedEntity]] = [[] for _ in parsed]
        by_world: dict[str, list[int]] = {}
        for i, mention in enumerate(parsed):
            by_world.setdefault(mention.world, []).append(i)
        for world, indices in by_world.items():
            batches = [indices[s : s + self.batch_size] for s in range(0, len(indices), self.batch_size)]
            for batch in tqdm(
                batches, desc=f"linking {world}", disable=not self.show_progress or len(batches) < 2
            ):
                for i, ranked in zip(
                    batch, self._link_batch(world, [parsed[i] for i in batch], top_k), strict=True
                ):
                    results[i] = ranked
        return results

    def _resolve_world(self, mention: MentionInput, position: int) -> MentionInput:
        worlds = self.worlds
        if mention.world is None:
            if len(worlds) > 1:
                raise ValueError(
                    f"mention {position}: no 'world' given and the index has {len(worlds)} worlds {worlds[:5]}"
                )
            mention.world = worlds[0]
        elif mention.world not in self.index.worlds:
            raise ValueError(
                f"mention {position}: world {mention.world!r} is not in the index (has {worlds[:5]})"
            )
        return mention

    def _featurize_mentions(self, mentions: Sequence[MentionInput], tokenizer) -> datasets.Dataset:
        table = datasets.Dataset.from_list([asdict(m) for m in mentions])
        with quiet_datasets():
            return featurize_mentions(table, tokenizer, self.max_length)

    @torch.no_grad()
    def _link_batch(
        self, world: str, mentions: Sequence[MentionInput], top_k: int
    ) -> list[list[LinkedEntity]]:
        featurized = self._featurize_mentions(mentions, self.tokenizer).with_format(
            "torch", columns=["mention_input_ids", "mention_attention_mask"]
        )[:]
        reps = self.index.encode_mentions(
            featurized["mention_input_ids"], featurized["mention_attention_mask"]
        )
        scores, rows = self.index.search(world, reps, top_k)  # [B, k], world rows
        ranking = Ranking(rows=rows, scores=scores)
        if self.reranker is not None:
            ranking = self._rerank(world, mentions, ranking)
        titles = self.entities[world]["title"]
        ids = self.entities[world]["entity_id"]
        return [
            [
                LinkedEntity(entity_id=ids[r], title=titles[r], score=float(s), world=world)
                for r, s in zip(row, score, strict=True)
                if r >= 0
            ]
            for row, score in zip(ranking.rows.tolist(), ranking.scores.tolist(), strict=True)
        ]

    def _rerank(self, world: str, mentions: Sequence[MentionInput], ranking: Ranking) -> Ranking:
        """Re-sort each mention's candidates with the joint reranker (via evaluation.rerank)."""
        used = sorted({r for r in ranking.rows.flatten().tolist() if r >= 0})
        local = {row: position for position, row in enumerate(used)}
        entity_rows = self.entities[world].select(used)
        with quiet_datasets():
            featurized = featurize_entities(entity_rows, self.reranker_tokenizer, self.max_length)
        entities = EntityTable(
            entity_ids=list(entity_rows["entity_id"]),
            worlds=[world] * len(used),
            titles=list(entity_rows["title"]),
            input_ids=torch.tensor(featurized["entity_input_ids"]),
            attention_mask=torch.tensor(featurized["entity_attention_mask"]),
        )
        rows = _remap(ranking.rows, local)
        mention_table = self._mention_table(world, mentions, gold_rows=rows[:, 0])
        reranked = rerank(
            self.reranker,
            Ranking(rows=rows, scores=ranking.scores),
            mention_table,
            entities,
            cross=True,
            batch_size=self.rerank_batch_size,
        )
        back = torch.tensor(used, dtype=torch.long)
        return Ranking(
            rows=torch.where(reranked.rows >= 0, back[reranked.rows.clamp(min=0)], -1), scores=reranked.scores
        )

    def _mention_table(
        self, world: str, mentions: Sequence[MentionInput], gold_rows: torch.Tensor
    ) -> MentionTable:
        """A MentionTable for :func:`rerank`; its ``gold_rows`` are placeholders (the top retrieved rows)."""
        featurized = self._featurize_mentions(mentions, self.reranker_tokenizer)
        return MentionTable(
            mention_ids=[str(i) for i in range(len(mentions))],
            worlds=[world] * len(mentions),
            categories=[""] * len(mentions),
            surfaces=[m.mention for m in mentions],
            contexts=[m.mention for m in mentions],
            gold_rows=gold_rows,
            input_ids=torch.tensor(featurized["mention_input_ids"]),
            attention_mask=torch.tensor(featurized["mention_attention_mask"]),
        )


def load_model(path: str | Path, expected: type[torch.nn.Module]) -> torch.nn.Module:
    """A saved retriever / reranker as its registered class (``SumOfMaxModel``, ...), using this package's code."""
    model = AutoModel.from_pretrained(str(path), trust_remote_code=False)
    if not isinstance(model, expected):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a {expected.__name__}")
    return model


def _remap(rows: torch.Tensor, mapping: dict[int, int]) -> torch.Tensor:
    """Map world rows [N, k] to positions of the candidate table (-1 stays -1)."""
    return torch.tensor([[mapping.get(r, -1) for r in row] for row in rows.tolist()], dtype=torch.long)


def _optional_tokenizer(path: str | Path):
    """The tokenizer saved with a model folder/repo, or None when it has none."""
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError, TypeError):
        logger.info("no tokenizer found with %s; using the retriever's", path)
        return None
