"""The systems benchmarks/vs_sentence_transformers.py compares: the sentence-transformers peers and the settings of
every NCETrainer row (`ours` = recipes/configs/kb_dual.yaml, its ablations, the paper's rows, earlier defaults)."""

from __future__ import annotations

ST_ROW = "st-mnrl"
# sentence-transformers rows: name -> (mine_hard_negatives corpus, batch size, learning rate or None for
# --learning_rate). `st-mnrl` is the issue's practitioner recipe (the default corpus: the training pairs'
# positives; batch 32); the others change one thing, to show what the same changes do for the peer.
ST_ROWS = {
    ST_ROW: ("positives", 32, None),
    "st-mnrl-kb": ("kb", 32, None),
    "st-mnrl-B16": ("positives", 16, None),
    "st-mnrl-lr1e-4": ("positives", 32, 1e-4),
}
PYLATE_ROW = "pylate"
PAPER = {  # the run of recipes/zeshel_dual.py
    "architecture": "dual",
    "reduction": "leftmost",
    "similarity": "dot",
    "similarity_scale": 20.0,
    "shared_encoder": False,
    "num_candidates": 16,
    "per_device_train_batch_size": 8,
    "share_candidates": False,
    "negative_pool": "world",
    "optim": "adamw_torch",
    "learning_rate": None,  # None: --learning_rate
    "warmup_steps": 0.0,  # a float < 1 is a ratio of the steps (transformers 5)
    "freeze_word_embeddings": False,
    "group_batches_by_world": False,
}
# Each row: overrides of PAPER. "ours" is the configuration the README recommends for practitioners
# (recipes/configs/kb_dual.yaml): hard negatives re-mined every epoch from the labeled entities of the mention's
# world, shared across batches of 32 mentions of one world (K = 2: own gold + 1 hard; up to 63 negatives per
# mention), mean pooling, cosine x 20, two encoders (the paper's E and F; one shared encoder measured worse),
# word-embedding tables fixed, lr 1e-4, fused AdamW.
KB_V1 = {  # recipes/configs/kb_dual.yaml until issue 22 (the glossary tables' `ours`, docs/results.md)
    **PAPER,
    "negatives": "hard",
    "negative_pool": "labeled",
    "share_candidates": True,
    "num_candidates": 2,
    "per_device_train_batch_size": 32,
    "learning_rate": 1e-4,
    "freeze_word_embeddings": True,
    "group_batches_by_world": True,
    "similarity": "cosine",
    "reduction": "mean",
    "shared_encoder": False,
    "optim": "adamw_torch_fused",
}
# `ours`: recipes/configs/kb_dual.yaml since issue 22, decided on wsd_dev (docs/results.md#real-data-wsd_dev): KB_V1 with
# the mention side reduced to the mention's own tokens (span), one shared encoder, lr --learning_rate (5e-5),
# embeddings trained, batches of 32 of any world
OURS = {
    **KB_V1,
    "reduction": "span",
    "shared_encoder": True,
    "learning_rate": None,
    "freeze_word_embeddings": False,
    "group_batches_by_world": False,
}
# the `ours` before KB_V1 (README run A/B/C): batch 16, lr --learning_rate, embeddings trained
OURS_B16 = {
    **KB_V1,
    "per_device_train_batch_size": 16,
    "learning_rate": None,
    "freeze_word_embeddings": False,
    "group_batches_by_world": False,
}
SYSTEMS: dict[str, dict] = {
    "paper-dual-random": {**PAPER, "negatives": "random"},
    "paper-dual-hard": {**PAPER, "negatives": "hard"},
    "ours": OURS,
    "kb-dual-v1": KB_V1,
    # ablations: one change from `ours` each
    "ours-B16": {**OURS, "per_device_train_batch_size": 16},
    "ours-lr1e-4": {**OURS, "learning_rate": 1e-4},
    "ours-frozen-emb": {**OURS, "freeze_word_embeddings": True},
    "ours-world-pool": {**OURS, "negative_pool": "world"},
    "ours-leftmost": {**OURS, "reduction": "leftmost"},
    "ours-dot": {**OURS, "similarity": "dot"},
    "ours-two-encoders": {**OURS, "shared_encoder": False},
    "ours-K4": {**OURS, "num_candidates": 4},
    "ours-unshared-K4": {**OURS, "num_candidates": 4, "share_candidates": False},
    "ours-random": {**OURS, "negatives": "random"},
    "ours-warmup10": {**OURS, "warmup_steps": 0.1},
    "ours-world-batches": {**OURS, "group_batches_by_world": True},
    # the previous `ours` (batch 16, lr 5e-5, embeddings trained) and its one-change ablations (README runs A-C)
    "ours-b16": OURS_B16,
    "ours-b16-frozen-emb": {**OURS_B16, "freeze_word_embeddings": True},
    "ours-b16-B32": {**OURS_B16, "per_device_train_batch_size": 32},
    "ours-b16-B32-lr1e-4": {**OURS_B16, "per_device_train_batch_size": 32, "learning_rate": 1e-4},
    "ours-b16-lr1e-4": {**OURS_B16, "learning_rate": 1e-4},
    "ours-b16-shared-encoder": {**OURS_B16, "shared_encoder": True},
    "som-paper-hard": {**PAPER, "architecture": "som", "negatives": "hard"},
    # `ours` for sum-of-max: a sum of up to T cosines, no extra temperature (as ColBERT / PyLate)
    "som-ours": {**KB_V1, "architecture": "som", "reduction": "leftmost", "similarity_scale": 1.0},
    # the paper's dual at K = 64 with each negative distribution, from the training pool (all training entities)
    **{
        f"paper-K64-{negatives}": {
            **PAPER,
            "negatives": negatives,
            "num_candidates": 64,
            "negative_pool": "training",
        }
        for negatives in ("random", "hard", "mixed")
    },
    # KB_V1 with the peer's settings (one shared encoder, lr --learning_rate, embeddings trained, batches of 32 of
    # any world, in-batch + 1 mined negative), re-mined every epoch (`ours` minus the span reduction)
    "ours-st-settings": {**OURS, "reduction": "mean"},
}
# the same with other pools / mining intervals / K (issue 22's exploration on wsd_dev)
SYSTEMS["ours-st-alias"] = {**SYSTEMS["ours-st-settings"], "negative_pool": "alias"}
SYSTEMS["ours-st-once"] = {**SYSTEMS["ours-st-settings"], "mining_interval": 0}  # mined once, initial model
SYSTEMS["ours-st-once-K4"] = {**SYSTEMS["ours-st-once"], "num_candidates": 4}
SYSTEMS["ours-once"] = {**OURS, "mining_interval": 0}
SYSTEMS["ours-alias-pool"] = {**OURS, "negative_pool": "alias"}
SYSTEMS["som-ours-b16"] = {
    **SYSTEMS["som-ours"],
    **{
        k: v for k, v in OURS_B16.items() if KB_V1[k] != v
    },  # batch 16, lr 5e-5, embeddings trained, mixed batches
}
DEFAULT_ROWS = [*ST_ROWS, "paper-dual-random", "paper-dual-hard", "kb-dual-v1", "ours", "ours-world-pool"]
