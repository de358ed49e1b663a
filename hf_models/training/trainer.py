"""`NCETrainer`: a `transformers.Trainer` that trains with hard-negative NCE (eq. 11 / eq. 10)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from ..atomic import fault_point, staged_files
from ..index.entity_index import EntityIndex
from ..index.evaluation import Ranking, evaluate_ranking, rerank, retrieve_splits
from ..index.tables import EntityTable, MentionTable
from ..publishing.model_card import write_model_card
from .callbacks import NegativeMiningCallback, NegativeSource
from .checkpoints import (
    NEGATIVES_NAME,
    load_negatives,
    negatives_fingerprint,
    negatives_problem,
    resolve_resume,
    save_negatives,
)
from .collator import CandidateCollator, MentionIndexDataset, NegativesStore, WorldBatchSampler
from .mining import NegativeMiner
from .training_args import NCETrainingArguments

logger = logging.getLogger(__name__)


def is_cross_encoder(model) -> bool:
    """The joint reranker reads [CLS] x [SEP] y pairs; every other architecture encodes the two sides apart."""
    return not hasattr(model, "encode_mentions")


def freeze_word_embeddings(model: torch.nn.Module) -> int:
    """Stop gradients into every backbone's word-embedding table (``--freeze_word_embeddings``); returns how many
    parameters were frozen (a table shared by two encoders counts once)."""
    from transformers import PreTrainedModel

    tables = {
        id(module.get_input_embeddings().weight): module.get_input_embeddings().weight
        for module in model.modules()
        if module is not model and isinstance(module, PreTrainedModel)
    }
    if not tables:
        raise ValueError(
            f"--freeze_word_embeddings: {type(model).__name__} has no backbone with input embeddings"
        )
    for weight in tables.values():
        weight.requires_grad_(False)
    frozen = sum(weight.numel() for weight in tables.values())
    logger.info("freeze_word_embeddings: %d word-embedding parameters will not be trained", frozen)
    return frozen


class NCETrainer(Trainer):
    """Train a retriever (or reranker) on mentions with gold + K-1 negatives (in-batch ones only with share_candidates).

    Args:
        model: a `RetrieverModel` subclass or `JointRerankerModel`.
        args: `NCETrainingArguments` (negatives, hard_percent, num_candidates K, loss, mining knobs).
        train_mentions / entities: the featurized training tables.
        eval_mentions / eval_entities: evaluation tables (retrieval restricted to each mention's world).
        eval_candidates: for a reranker, the fixed retriever candidates of `eval_mentions` (evaluation then
            reranks them and reports normalized/unnormalized accuracy).
        negative_source: where negatives come from; default: a `NegativeMiner` with the args' strategy.
            Reranker training passes `FixedNegatives` from a retriever's candidate file.
        dataset_name / base_model: recorded in the model card.
        aliases: the processed folder's ``AliasTable`` (data_scripts.aliases); needed by ``negative_pool: alias``.
    """

    def __init__(
        self,
        model,
        args: NCETrainingArguments,
        train_mentions: MentionTable,
        entities: EntityTable,
        eval_mentions: MentionTable | None = None,
        eval_entities: EntityTable | None = None,
        eval_candidates: Ranking | None = None,
        negative_source: NegativeSource | None = None,
        dataset_name: str = "",
        base_model: str = "",
        aliases=None,
        **kwargs,
    ) -> None:
        self.store = NegativesStore()
        self.cross = is_cross_encoder(model)
        if args.share_candidates and self.cross:
            raise ValueError(
                "--share_candidates: the joint reranker scores (mention, entity) pairs; it cannot share"
            )
        if args.freeze_word_embeddings:
            freeze_word_embeddings(model)
        collator = CandidateCollator(
            train_mentions, entities, self.store, cross=self.cross, share_candidates=args.share_candidates
        )
        super().__init__(
            model=model,
            args=args,
            train_dataset=MentionIndexDataset(len(train_mentions)),
            eval_dataset=MentionIndexDataset(len(eval_mentions)) if eval_mentions is not None else None,
            data_collator=collator,
            **kwargs,
        )
        self.train_mentions, self.entities = train_mentions, entities
        self.eval_mentions, self.eval_entities, self.eval_candidates = (
            eval_mentions,
            eval_entities or entities,
            eval_candidates,
        )
        self.dataset_name, self.base_model = dataset_name, base_model
        self.index = None if self.cross else self._make_index()
        if negative_source is None:
            if self.cross:
                raise ValueError(
                    "the joint reranker needs fixed negatives (negative_source=FixedNegatives(...))"
                )
            negative_source = NegativeMiner(
                self.index,
                train_mentions,
                entities,
                strategy=args.negatives,
                num_negatives=args.num_candidates - 1,
                hard_fraction=args.hard_percent / 100.0,
                seed=args.seed,
                chunk_size=args.mining_chunk_size,
                pool=args.negative_pool,
                alias_rows=self._alias_rows(aliases),
            )
        self.mining_callback = NegativeMiningCallback(negative_source, self.store, args.mining_interval)
        self.add_callback(self.mining_callback)
        if self.index is not None:
            self.add_callback(ReleaseEncodingsCallback(self.index))

    def _alias_rows(self, aliases) -> torch.Tensor | None:
        """The training mentions' alias candidates [N, C] (global rows, -1 padded) for ``negative_pool: alias``."""
        if self.args.negative_pool != "alias":
            return None
        if aliases is None:
            raise ValueError(
                "--negative_pool alias needs an alias table: the processed folder has no aliases.parquet (write "
                "one with python -m data_scripts.jsonl --aliases FILE, docs/own_kb.md) or use another pool"
            )
        from ..index.alias_metrics import alias_candidates

        return alias_candidates(aliases, self.train_mentions, self.entities).rows

    def _make_index(self, model=None) -> EntityIndex:
        """An EntityIndex over `model` (default: the model being trained) with the args' mining settings."""
        return EntityIndex(
            model if model is not None else self.model,
            self.accelerator,
            batch_size=self.args.mining_batch_size,
            encode_dtype=self.args.encode_dtype,
            store_dtype=getattr(torch, self.args.entity_store_dtype),
            chunk_size=self.args.score_chunk_size,
            backend=self.args.mining_backend,
            faiss_kind=self.args.faiss_kind,
            max_tokens=self.args.encode_max_tokens,
            score_dtype=self.args.score_dtype,
        )

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """eq. (11), or the score-adjusted eq. (10) when args.loss == "adjusted"; the gold is candidate 0.

        The model computes it (``candidate_loss``) from its scores [B, K] and the batch's negative_log_probs; with
        ``args.share_candidates`` from the batch's shared candidate set (scores [B, B*K]).
        """
        extra = {"share_candidates": True} if self.args.share_candidates else {}
        outputs = model(**inputs, loss=self.args.loss, **extra)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    # ------------------------------------------------------------ evaluation
    @property
    def recall_ks(self) -> tuple[int, ...]:
        """recall@1 (= accuracy), recall@8 and recall@eval_top_k."""
        return tuple(sorted({1, min(8, self.args.eval_top_k), self.args.eval_top_k}))

    def predict_rankings(
        self, mentions: MentionTable, entities: EntityTable, candidates: Ranking | None = None
    ) -> Ranking:
        """Retrieve top-k within each world, or rerank given candidates (reranker / any model as reranker)."""
        candidates_by_split = {"mentions": candidates} if candidates is not None else None
        return self.predict_split_rankings({"mentions": mentions}, entities, candidates_by_split)["mentions"]

    def predict_split_rankings(
        self,
        splits: dict[str, MentionTable],
        entities: EntityTable,
        candidates: dict[str, Ranking] | None = None,
        keep_encodings: bool = False,
    ) -> dict[str, Ranking]:
        """:meth:`predict_rankings` for several splits in one pass -> {split: Ranking}.

        Retrieval encodes each world once for all the splits (:func:`~hf_models.index.evaluation.retrieve_splits`);
        ``keep_encodings`` leaves the worlds in the index, where the next mining at the same step reuses them.
        A split with ``candidates`` is reranked instead.
        """
        candidates = candidates or {}
        rankings = {
            split: rerank(
                self.model,
                candidates[split],
                mentions,
                entities,
                cross=self.cross,
                batch_size=self.args.per_device_eval_batch_size,
                accelerator=self.accelerator,
            )
            for split, mentions in splits.items()
            if candidates.get(split) is not None
        }
        to_retrieve = {split: mentions for split, mentions in splits.items() if split not in rankings}
        if to_retrieve:
            if self.index is None:
                raise ValueError("a cross-encoder cannot retrieve: pass the retriever's candidates")
            rankings.update(
                retrieve_splits(
                    self.index,
                    to_retrieve,
                    entities,
                    k=self.args.eval_top_k,
                    chunk_size=self.args.mining_chunk_size,
                    keep=keep_encodings,
                )
            )
        return {split: rankings[split] for split in splits}

    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Recall@k (micro) and normalized/unnormalized accuracy (macro over worlds), per category too."""
        if self.eval_mentions is None:
            return {}
        candidates = {"eval": self.eval_candidates} if self.eval_candidates is not None else None
        ranking = self.predict_split_rankings(
            {"eval": self.eval_mentions}, self.eval_entities, candidates, keep_encodings=True
        )["eval"]
        ks = self.recall_ks
        metrics = evaluate_ranking(ranking, self.eval_mentions, self.eval_entities, ks=ks)
        if self.eval_candidates is not None:  # recall of the fixed retriever, for reference
            metrics[f"retriever_recall@{self.eval_candidates.rows.shape[1]}"] = metrics.pop(
                f"recall@{ks[-1]}"
            )
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in metrics.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
        return metrics

    # ------------------------------------------------- checkpoints and resume
    def _get_train_sampler(self, train_dataset=None):
        """``group_batches_by_world``: batches of one world each (:class:`WorldBatchSampler`); else the Trainer's."""
        if not self.args.group_batches_by_world:
            return super()._get_train_sampler(train_dataset)
        return WorldBatchSampler(self.train_mentions, self.args.per_device_train_batch_size, self.args.seed)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """As Trainer.train; a resumed run also restores the negatives of the epoch in progress.

        ``resume_from_checkpoint`` True or "true" (the command line) = the newest COMPLETE checkpoint of
        ``output_dir`` (incomplete newer ones are skipped with a warning); a checkpoint without its negatives is
        an error naming the file unless ``args.resume_remine_negatives`` (see hf_models/training/checkpoints.py).
        """
        remine = getattr(self.args, "resume_remine_negatives", False)
        resume = resolve_resume(
            resume_from_checkpoint,
            self.args.output_dir,
            need_negatives=not remine,
            need_optimizer=not self.args.save_only_model,
        )
        if resume and (Path(resume) / NEGATIVES_NAME).exists():
            restored = load_negatives(resume)
            problem = negatives_problem(restored, self._negatives_fingerprint())
            if problem is None:
                self.store.current = restored
                logger.info("restored the negatives of epoch %d from %s", restored.epoch, resume)
            elif remine:
                logger.warning(
                    "%s was mined for another run (%s): --resume_remine_negatives re-mines the epoch in progress",
                    Path(resume) / NEGATIVES_NAME,
                    problem,
                )
            else:
                raise ValueError(
                    f"{Path(resume) / NEGATIVES_NAME}: these negatives were mined for another run ({problem}). Resume "
                    "with the data and negative settings the checkpoint was trained with, or pass "
                    "--resume_remine_negatives true to re-mine the epoch in progress"
                )
        elif resume:
            logger.warning(
                "%s has no %s: --resume_remine_negatives re-mines the epoch in progress with the checkpoint's model "
                "(the run will differ from an uninterrupted one)",
                resume,
                NEGATIVES_NAME,
            )
        return super().train(resume_from_checkpoint=resume, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """As Trainer.save_model; inside a checkpoint the epoch's negatives are written right after the weights,
        before the optimizer and ``trainer_state.json`` (so a checkpoint is complete only with them)."""
        super().save_model(output_dir, _internal_call=_internal_call)
        checkpoint = output_dir is not None and Path(output_dir).name.startswith("checkpoint-")
        if checkpoint and _internal_call and self.args.should_save:
            fault_point("checkpoint:after_model")
            if self.store.current is not None:
                self.store.current.fingerprint = self._negatives_fingerprint()
                save_negatives(self.store.current, output_dir)
            fault_point("checkpoint:after_negatives")

    def _negatives_fingerprint(self) -> dict:
        """What this run's negatives are mined for (hashed once: the ids do not change during a run)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = negatives_fingerprint(self.train_mentions, self.entities, self.args)
        return self._fingerprint

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        """As Trainer's; an optimizer state saved for other trainable parameters names the flags that change them."""
        try:
            super()._load_optimizer_and_scheduler(checkpoint)
        except ValueError as error:
            # torch's words for a different set of trainable parameters; anything else passes through unchanged
            if "parameter group" not in str(error):
                raise
            raise ValueError(
                f"{checkpoint}: its optimizer state does not fit this run's trainable parameters ({error}). Was it "
                "saved with a different --freeze_word_embeddings? Resume with the flags it was trained with, or "
                "start a new --output_dir"
            ) from error

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        fault_point("checkpoint:saved")

    def latest_eval_metrics(self) -> dict[str, float]:
        for record in reversed(self.state.log_history):
            metrics = {k: v for k, v in record.items() if k.startswith("eval_")}
            if metrics:
                return metrics
        return {}

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Save weights, config and remote code files, plus a model card (README.md).

        Everything is written into a temporary folder first and then moved in file by file with ``os.replace``:
        no file of the folder is ever half-written (:func:`~hf_models.atomic.staged_files`).
        """
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return super()._save(output_dir, state_dict=state_dict)
        with staged_files(output_dir) as staging:
            super()._save(str(staging), state_dict=state_dict)
            write_model_card(
                staging,
                self.model.config,
                self.args,
                self.latest_eval_metrics(),
                dataset=self.dataset_name,
                base_model=self.base_model,
            )


class ReleaseEncodingsCallback(TrainerCallback):
    """Free the index's encodings after every optimizer step: they belong to the model state before the step.

    Evaluation keeps its worlds encoded (``keep_encodings``) so that mining at the same step (the next epoch's
    start) reuses them; any step in between makes them stale, and this callback frees their memory.
    """

    def __init__(self, index: EntityIndex) -> None:
        self.index = index

    def on_step_end(self, args, state, control, **kwargs):
        self.index.worlds.clear()
