"""The training room: :class:`NCETrainer` and :class:`NCETrainingArguments` and what they drive.

``trainer`` / ``training_args`` (the Trainer subclass and its arguments, a config pair as in TRL's
``trainer/``), ``mining`` (hard negatives from the index), ``streaming`` / ``draws`` / ``keyed_noise`` /
``samplers`` (eq. 8: the distribution negatives are drawn from, reproducibly per mention), ``collator``
(batches), ``callbacks`` (re-mining each epoch) and ``checkpoints`` (resumable mining state).

May import :mod:`hf_models.modeling`, :mod:`hf_models.index`, :mod:`hf_models.publishing` (the trainer writes
a model card with each save) and the shared top-level helpers; never linking, analysis or recipes.
"""
