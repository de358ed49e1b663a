"""`NCETrainingArguments`: the `TrainingArguments` of hard-negative NCE training (Section 6.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

NEGATIVE_STRATEGIES = ("random", "hard", "mixed", "topk")
LOSSES = ("nce", "adjusted")
NEGATIVE_POOLS = ("training", "world", "labeled", "alias")


@dataclass
class NCETrainingArguments(TrainingArguments):
    """TrainingArguments plus the negatives, loss and mining knobs of the paper."""

    negatives: str = field(
        default="hard",
        metadata={
            "help": "Negative distribution: random (uniform over the negative pool's entities, gold excluded), hard "
            "(K-1 without replacement with p ∝ exp(s), eq. 8), mixed (hard_percent% hard, rest random) or topk "
            "(greedy, Gillick et al.). Re-mined at the start of every epoch with the current model.",
            "choices": list(NEGATIVE_STRATEGIES),
        },
    )
    hard_percent: float = field(
        default=50.0,
        metadata={"help": "Mixed-p: percentage p of the K-1 negatives that are hard (Appendix A)."},
    )
    num_candidates: int = field(
        default=64, metadata={"help": "K: gold + K-1 negatives per mention (paper: 64)."}
    )
    loss: str = field(
        default="nce",
        metadata={
            "help": "nce: eq. (11); adjusted: the score-adjusted loss of eq. (10) (s - log((K-1) nu(y|x,y1)) on "
            "negatives).",
            "choices": list(LOSSES),
        },
    )
    mining_batch_size: int = field(
        default=128, metadata={"help": "Encoder batch size when (re-)encoding for mining/eval."}
    )
    mining_chunk_size: int = field(
        default=256,
        metadata={"help": "Mentions scored per mining chunk (memory: chunk x world entities scores)."},
    )
    score_chunk_size: int = field(
        default=4096, metadata={"help": "Entities scored per chunk in all-pairs scoring."}
    )
    mining_backend: str = field(
        default="exact",
        metadata={
            "help": "exact (chunked products, every architecture) or faiss (dual/multi-m; top-k only).",
            "choices": ["exact", "faiss"],
        },
    )
    faiss_kind: str = field(default="flat", metadata={"help": "FAISS index kind: flat, ivf or hnsw."})
    encode_dtype: str = field(
        default="auto",
        metadata={
            "help": "Autocast dtype for encoding during mining/eval: auto (bf16 on GPUs and AMX CPUs, fp16 on GPUs "
            "without bf16), float32, bfloat16, float16."
        },
    )
    entity_store_dtype: str = field(
        default="float32",
        metadata={"help": "Dtype of stored entity representations: float32 or float16 (half memory)."},
    )
    eval_top_k: int = field(
        default=64, metadata={"help": "k of the top-k recall used for evaluation and candidate files."}
    )
    share_candidates: bool = field(
        default=False,
        metadata={
            "help": "Not in the paper: score each mention against the union of its batch's B x K candidates (own gold "
            "first, other slots holding its gold and repeated entities masked): up to B*K-1 negatives (the batch's "
            "hard negatives plus the other golds as in-batch negatives) for the encoding cost of K (each distinct "
            "entity of the batch is encoded once). Needs loss=nce."
        },
    )
    group_batches_by_world: bool = field(
        default=False,
        metadata={
            "help": "Not in the paper: every training batch holds mentions of one world (leftovers of each world form "
            "mixed batches), reshuffled every epoch from the seed. With share_candidates the in-batch negatives are "
            "then entities of the mention's own world, and repeated entities of a batch are encoded once."
        },
    )
    freeze_word_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Not in the paper: keep every encoder's word-embedding table fixed (no gradient, no optimizer "
            "state). On CPU this saves the dense [vocab, H] gradient and its AdamW update at every step (for "
            "MiniLM about half of the trainable parameters); position embeddings and all layers still train."
        },
    )
    mining_interval: int = field(
        default=1,
        metadata={
            "help": "Re-mine the negatives at the start of every N-th epoch with the current model (1: every epoch, "
            "the paper); in the epochs between, the last mined negatives are kept. 0: mine once, with the initial "
            "model, before the first epoch (what sentence-transformers' mine_hard_negatives recipe does)."
        },
    )
    resume_remine_negatives: bool = field(
        default=False,
        metadata={
            "help": "Accept resuming from a checkpoint without negatives.pt (saved by an older version): the epoch "
            "in progress is re-mined with the checkpoint's model, so the run differs from an uninterrupted one. "
            "Without it such a checkpoint is an error."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the train dataset yields mention indices, not model inputs."},
    )
    encode_max_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Token budget of one encoder batch when (re-)encoding for mining/eval (rows x longest row; rows "
            "are sorted by length first, so short texts fill bigger batches). None = mining_batch_size x max_length."
        },
    )
    score_dtype: str = field(
        default="auto",
        metadata={
            "help": "Precision of the scoring products in evaluation/linking: auto (the encode dtype when the query "
            "side has several vectors: som, genpoly-m; else float32), float32 (exact), bfloat16 or float16; sums "
            "accumulate in fp32.",
            "choices": ["auto", "float32", "bfloat16", "float16"],
        },
    )
    negative_pool: str = field(
        default="world",
        metadata={
            "help": "Where negatives come from: training (every entity of every training world, gold excluded: the "
            "paper's setting, Sections 6.2-6.3, used by the paper recipes) or world (only the mention's own world: "
            "harder, world-specific negatives and cheaper mining, but not the paper's distribution) or labeled (only the "
            "entities of the mention's world that are the gold of some training mention: sentence-transformers' "
            "mine_hard_negatives default corpus; re-mining costs a fraction of a world's encoding) or alias (the "
            "labeled entities plus every alias candidate of the training mentions' alias keys in the mention's world: "
            "the other senses of each mention's name; needs the processed folder's alias table).",
            "choices": list(NEGATIVE_POOLS),
        },
    )
    total_train_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Mentions per optimizer step over all processes and accumulation steps (paper: 4; joint: 2). "
            "When set, the recipes derive per_device_train_batch_size (at most the given one) and "
            "gradient_accumulation_steps for the launched process count, or refuse a count that cannot keep it. "
            "None = per_device_train_batch_size x processes x gradient_accumulation_steps."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.negatives not in NEGATIVE_STRATEGIES:
            raise ValueError(f"negatives must be one of {NEGATIVE_STRATEGIES}, got {self.negatives!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0.0 <= self.hard_percent <= 100.0:
            raise ValueError(f"hard_percent must be in [0, 100], got {self.hard_percent}")
        if self.num_candidates < 2:
            raise ValueError(f"num_candidates (K) must be >= 2, got {self.num_candidates}")
        if self.loss == "adjusted" and self.negatives == "topk":
            raise ValueError(
                "loss='adjusted' (eq. 10) needs sampled negatives; negatives='topk' is deterministic"
            )
        if self.share_candidates and self.loss != "nce":
            raise ValueError(
                "share_candidates needs loss='nce': eq. (10) needs each negative's proposal probability, unknown "
                "for the other mentions' candidates"
            )
        for name in ("eval_top_k", "mining_batch_size", "mining_chunk_size", "score_chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.encode_max_tokens is not None and self.encode_max_tokens <= 0:
            raise ValueError(f"encode_max_tokens must be positive or None, got {self.encode_max_tokens}")
        if self.total_train_batch_size is not None and self.total_train_batch_size < 1:
            raise ValueError(
                f"total_train_batch_size must be >= 1 or None, got {self.total_train_batch_size}"
            )
        if self.mining_interval < 0:
            raise ValueError(f"mining_interval must be >= 0 (0: mine once), got {self.mining_interval}")
        if self.negative_pool not in NEGATIVE_POOLS:
            raise ValueError(f"negative_pool must be one of {NEGATIVE_POOLS}, got {self.negative_pool!r}")
        if self.entity_store_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(
                f"entity_store_dtype must be float32, float16 or bfloat16, got {self.entity_store_dtype!r}"
            )

    @property
    def hard_fraction(self) -> float:
        return self.hard_percent / 100.0 if self.negatives == "mixed" else float(self.negatives == "hard")
