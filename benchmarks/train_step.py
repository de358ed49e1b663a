"""NCETrainer step time vs a bare PyTorch loop doing the same work on the same batches.

For each architecture a retriever is built on the packaged all-MiniLM-L6-v2 and its initial weights are kept. The
training mentions of one world (default ``foldoc_languages``, 1,068 entities) are featurized at ``--max-length``.

1. ``NCETrainer`` trains for ``--warmup + --steps`` steps (``max_steps``). Its own ``NegativeMiningCallback`` mines
   the negatives once at the start (``--negatives``, default hard, K = ``--num-candidates``) and its own
   ``CandidateCollator`` builds every batch; a wrapper records each batch (mention indices and tensors). A callback
   takes the wall time at every ``on_step_end``: a step is the interval between two consecutive step ends, so
   it covers everything the Trainer does per step (dataloader + collation, ``_prepare_inputs``, forward,
   ``compute_loss``, backward, gradient-norm clipping, optimizer step, scheduler step, ``zero_grad``, callbacks,
   logging with ``logging_steps``).
2. The bare loop starts from the SAME initial weights (its own copy of the model), builds the same optimizer
   (class and settings read from the Trainer's optimizer), and for each recorded batch: calls the trainer's
   collator on the same mention indices (checked equal to the recorded batch), runs forward, the same
   ``nce_loss`` / ``adjusted_nce_loss``, backward, ``clip_grad_norm_`` with the same ``max_grad_norm``,
   ``optimizer.step()``, ``zero_grad()`` and ``loss.item()``.

Interleaved (the default): bare step k runs inside the Trainer's ``on_step_end`` of step k, so the two alternate
A B A B ... and machine drift hits both alike; the Trainer's step k+1 is timed from the end of bare step k to its
own step end. ``--sequential`` runs the whole Trainer first, then the whole bare loop. The table reports the
medians, the ratio and the spread (interquartile range, min-max) of each side.

Same work on both sides: constant learning rate (``lr_scheduler_type="constant"``, no warm-up), weight decay 0,
``max_grad_norm`` identical (default 1.0; with 0 the Trainer still computes the norm, so clipping is kept on),
dropout RNG re-seeded to the same value before every step on both sides (so the per-step losses must agree:
the table reports the largest difference). The first ``--warmup`` steps are excluded; the median of the next
``--steps`` is reported with the overhead ``trainer / bare - 1``.

Usage::

    nice python benchmarks/train_step.py                       # som and dual, 4 mentions x K=8, length 64, CPU,
                                                               # 30 timed steps each, interleaved
    nice python benchmarks/train_step.py --architectures dual --batch-size 8 --bf16
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import machine_line, synchronize  # noqa: E402
from hf_models.index.tables import EntityTable, MentionTable  # noqa: E402
from hf_models.modeling.losses import adjusted_nce_loss, nce_loss  # noqa: E402
from hf_models.recipes.model_setup import build_model  # noqa: E402
from hf_models.recipes.recipe import load_recipe_data  # noqa: E402
from hf_models.recipes.recipe_args import DataArguments, ModelArguments, resolve_encoder  # noqa: E402
from hf_models.training.trainer import NCETrainer  # noqa: E402
from hf_models.training.training_args import NCETrainingArguments  # noqa: E402


def world_tables(
    entities: EntityTable, mentions: MentionTable, world: str, limit: int
) -> tuple[EntityTable, MentionTable]:
    """The entities of one world and its first ``limit`` mentions (gold rows remapped to the smaller table)."""
    rows = entities.rows_by_world[world].tolist()
    sub_entities = EntityTable(
        entity_ids=[entities.entity_ids[r] for r in rows],
        worlds=[world] * len(rows),
        titles=[entities.titles[r] for r in rows],
        input_ids=entities.input_ids[rows],
        attention_mask=entities.attention_mask[rows],
    )
    new_row = {old: new for new, old in enumerate(rows)}
    chosen = [i for i, w in enumerate(mentions.worlds) if w == world][:limit]
    if len(chosen) < limit:
        raise SystemExit(f"world {world!r} has {len(chosen)} training mentions, need {limit}")
    sub_mentions = MentionTable(
        mention_ids=[mentions.mention_ids[i] for i in chosen],
        worlds=[world] * len(chosen),
        categories=[mentions.categories[i] for i in chosen],
        surfaces=[mentions.surfaces[i] for i in chosen],
        contexts=[mentions.contexts[i] for i in chosen],
        gold_rows=torch.tensor([new_row[int(mentions.gold_rows[i])] for i in chosen]),
        input_ids=mentions.input_ids[chosen],
        attention_mask=mentions.attention_mask[chosen],
    )
    return sub_entities, sub_mentions


class RecordingCollator:
    """Wrap the trainer's collator: remember the mention indices and (a copy of) every batch it builds."""

    def __init__(self, collator) -> None:
        self.collator = collator
        self.batches: list[tuple[list[int], dict[str, torch.Tensor]]] = []

    def __call__(self, features):
        batch = self.collator(features)
        self.batches.append(
            ([f["mention_index"] for f in features], {k: v.clone() for k, v in batch.items()})
        )
        return batch


class StepClock(TrainerCallback):
    """Times each Trainer step; re-seeds the dropout RNG at each step begin (the bare loop does the same).

    ``ends[k]`` is taken at the end of step k, ``resumes[k]`` after the interleaved bare step k (if any) ran inside
    this callback, so Trainer step k+1 = ``ends[k+1] - resumes[k]`` never includes bare work.
    """

    def __init__(self, seed: int, bare: BareLoop | None = None) -> None:
        self.seed, self.bare, self.ends, self.resumes = seed, bare, [], []

    def on_step_begin(self, args, state, control, **kwargs):
        torch.manual_seed(self.seed + state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())
        if self.bare is not None:
            self.bare.step(kwargs["optimizer"])
        self.resumes.append(time.perf_counter())


def record_losses(trainer: NCETrainer) -> list[torch.Tensor]:
    """Keep each step's loss (detached, no host sync) from the trainer's own ``compute_loss``."""
    losses: list[torch.Tensor] = []
    compute_loss = trainer.compute_loss

    def recording(*args, **kwargs):
        loss = compute_loss(*args, **kwargs)
        losses.append((loss[0] if isinstance(loss, tuple) else loss).detach())
        return loss

    trainer.compute_loss = recording
    return losses


def run_trainer(model, args, entities, mentions, device, output_dir: str, bare_model=None):
    """Train ``--warmup + --steps`` steps; with ``bare_model`` run the bare loop interleaved (one step after each)."""
    train_args = NCETrainingArguments(
        output_dir=output_dir,
        negatives=args.negatives,
        num_candidates=args.num_candidates,
        loss=args.loss,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=args.max_grad_norm,
        logging_steps=args.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=device.type == "cpu",
        bf16=args.bf16,
        seed=args.seed,
        mining_batch_size=64,
        encode_dtype=args.encode_dtype,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = NCETrainer(model, train_args, mentions, entities)
    recorder = RecordingCollator(trainer.data_collator)
    trainer.data_collator = recorder
    bare = BareLoop(bare_model, recorder, args, device) if bare_model is not None else None
    clock = StepClock(args.seed, bare)
    trainer.add_callback(clock)
    losses = record_losses(trainer)
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    # step k = end(k) - resume(k-1): from the end of the previous step (and of its bare step) to this step's end
    steps = [b - a for a, b in zip(clock.resumes, clock.ends[1:], strict=False)]
    mining = clock.ends[0] - start if clock.ends else float("nan")
    return trainer, recorder, bare, steps, [float(loss) for loss in losses], mining, total


class BareLoop:
    """Plain PyTorch steps on the batches the Trainer's collator recorded (same seeds, optimizer and clipping)."""

    def __init__(self, model, recorder: RecordingCollator, args, device) -> None:
        self.model, self.recorder, self.args, self.device = model, recorder, args, device
        self.optimizer, self.summary = None, ""
        self.times: list[float] = []
        self.losses: list[float] = []
        self.autocast = (
            (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16))
            if args.bf16
            else contextlib.nullcontext
        )

    def _build_optimizer(self, trainer_optimizer) -> None:
        """The Trainer's optimizer class and settings, over this loop's own parameters."""
        inner = getattr(trainer_optimizer, "optimizer", trainer_optimizer)
        accepted = inspect.signature(type(inner).__init__).parameters
        settings = [{k: v for k, v in group.items() if k != "params"} for group in inner.param_groups]
        if any(group != settings[0] for group in settings):
            raise RuntimeError(f"the Trainer's parameter groups differ: {settings}")
        kwargs = {k: v for k, v in {**inner.defaults, **settings[0]}.items() if k in accepted}
        self.optimizer = type(inner)(self.model.parameters(), **kwargs)
        flags = {k: kwargs[k] for k in ("lr", "betas", "eps", "weight_decay", "fused") if k in kwargs}
        self.summary = f"{type(inner).__name__}({', '.join(f'{k}={v}' for k, v in flags.items())})"

    def step(self, trainer_optimizer) -> None:
        """Bare step number len(self.times) on the batch the Trainer used for its step of that number."""
        if self.optimizer is None:
            self._build_optimizer(trainer_optimizer)
            self.model.train()
        step = len(self.times)
        indices, recorded = self.recorder.batches[step]
        synchronize(self.device)
        start = time.perf_counter()
        batch = self.recorder.collator([{"mention_index": i} for i in indices])
        collated = dict(batch)
        negative_log_probs = batch.pop("negative_log_probs").to(self.device)
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        torch.manual_seed(self.args.seed + step)
        with self.autocast():
            scores = self.model(**inputs).scores
            if self.args.loss == "adjusted":
                loss = adjusted_nce_loss(scores, negative_log_probs)
            else:
                loss = nce_loss(scores)
        loss.backward()
        if self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(loss.item())
        synchronize(self.device)
        self.times.append(time.perf_counter() - start)
        if collated.keys() != recorded.keys() or not all(
            torch.equal(collated[k], v) for k, v in recorded.items()
        ):
            raise RuntimeError(f"step {step}: the collator rebuilt a different batch")


def spread(values: list[float]) -> str:
    """'IQR a-b, range c-d' of step seconds."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"IQR {q[0]:.3f}-{q[2]:.3f}, range {min(values):.3f}-{max(values):.3f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset-dir", default="data/glossary_el")
    parser.add_argument("--world", default="foldoc_languages")
    parser.add_argument("--architectures", nargs="+", default=["som", "dual"])
    parser.add_argument("--batch-size", type=int, default=4, help="mentions per step")
    parser.add_argument("--num-candidates", type=int, default=8, help="K = gold + K-1 negatives")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--negatives", default="hard", choices=["random", "hard", "mixed", "topk"])
    parser.add_argument("--loss", default="nce", choices=["nce", "adjusted"])
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="run the whole Trainer, then the whole bare loop (default: interleaved A B A B)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="same clipping on both sides")
    parser.add_argument(
        "--logging-steps", type=int, default=1, help="Trainer logging interval (1 = worst case)"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast training on both sides")
    parser.add_argument("--encode-dtype", default="auto", help="the Trainer's mining encode dtype")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        raise SystemExit("--warmup and --steps must be >= 1 (the first step has no previous step end)")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("embedded"))
    data = load_recipe_data(
        DataArguments(
            dataset_dir=args.dataset_dir, max_length=args.max_length, eval_split="", test_split=None
        ),
        tokenizer,
    )
    num_mentions = args.batch_size * (args.warmup + args.steps)
    entities, mentions = world_tables(data.entities, data.splits["train"], args.world, num_mentions)
    results = []
    for arch in args.architectures:
        torch.manual_seed(args.seed)
        model = build_model(ModelArguments(architecture=arch), tokenizer)
        bare_model = build_model(ModelArguments(architecture=arch), tokenizer)
        bare_model.load_state_dict(model.state_dict())
        bare_model.to(device)
        with tempfile.TemporaryDirectory(prefix="train_step_bench_") as output_dir:
            trainer, recorder, bare, t_steps, t_losses, mining, _ = run_trainer(
                model, args, entities, mentions, device, output_dir, None if args.sequential else bare_model
            )
        if bare is None:  # --sequential: the whole bare loop after the whole Trainer run
            bare = BareLoop(bare_model, recorder, args, device)
            for _ in range(args.warmup + args.steps):
                bare.step(trainer.optimizer)
        b_steps, b_losses, optimizer = bare.times, bare.losses, bare.summary
        t_timed = t_steps[args.warmup - 1 :][: args.steps]  # interval k ends at step k; skip the warm-up
        b_timed = b_steps[args.warmup :][: args.steps]
        diff = max((abs(a - b) for a, b in zip(t_losses, b_losses, strict=False)), default=float("nan"))
        results.append((arch, t_timed, b_timed, diff, mining))
        print(f"[{arch}: trainer steps {[round(s, 3) for s in t_steps]}]", file=sys.stderr)
        print(f"[{arch}: bare steps    {[round(s, 3) for s in b_steps]}]", file=sys.stderr)
        del trainer, model, bare_model

    print(f"\n{machine_line(device, with_load=False)}")
    print(
        f"world {args.world} ({len(entities)} entities); {args.batch_size} mentions x K={args.num_candidates} "
        f"candidates ({args.negatives} negatives mined once by the Trainer); max_length {args.max_length}; "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}; optimizer {optimizer}, constant lr, "
        f"max_grad_norm {args.max_grad_norm} both sides; Trainer logging_steps {args.logging_steps}; "
        f"median of {args.steps} steps after {args.warmup} warm-up steps, "
        f"{'sequential (Trainer, then bare)' if args.sequential else 'interleaved A B A B'}\n"
    )
    print(
        "| arch | NCETrainer s/step (median) | bare loop s/step (median) | overhead | NCETrainer spread "
        "| bare spread | timed steps | max abs loss diff | mining s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for arch, t, b, diff, mining in results:
        tm, bm = statistics.median(t), statistics.median(b)
        print(
            f"| {arch} | {tm:.3f} | {bm:.3f} | {100 * (tm / bm - 1):+.1f}% | {spread(t)} | {spread(b)} | "
            f"{len(t)} | {diff:.1e} | {mining:.1f} |"
        )


if __name__ == "__main__":
    main()
