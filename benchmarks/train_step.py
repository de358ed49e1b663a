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
2. The bare loop restarts from the SAME initial weights, builds the same optimizer (class and defaults read from
   the Trainer's optimizer), and for each recorded batch: calls the trainer's collator on the same mention
   indices (checked equal to the recorded batch), runs forward, the same ``nce_loss`` / ``adjusted_nce_loss``,
   backward, ``clip_grad_norm_`` with the same ``max_grad_norm``, ``optimizer.step()``, ``zero_grad()`` and
   ``loss.item()``.

Same work on both sides: constant learning rate (``lr_scheduler_type="constant"``, no warm-up), weight decay 0,
``max_grad_norm`` identical (default 1.0; with 0 the Trainer still computes the norm, so clipping is kept on),
dropout RNG re-seeded to the same value before every step on both sides (so the per-step losses must agree:
the table reports the largest difference). The first ``--warmup`` steps are excluded; the median of the next
``--steps`` is reported with the overhead ``trainer / bare - 1``.

Usage::

    nice python benchmarks/train_step.py                       # som and dual, 4 mentions x K=8, length 64, CPU
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
from _common import machine_line  # noqa: E402

from hf_models.losses import adjusted_nce_loss, nce_loss  # noqa: E402
from hf_models.recipe import (  # noqa: E402
    DataArguments,
    ModelArguments,
    build_model,
    load_recipe_data,
    resolve_encoder,
)
from hf_models.tables import EntityTable, MentionTable  # noqa: E402
from hf_models.trainer import NCETrainer  # noqa: E402
from hf_models.training_args import NCETrainingArguments  # noqa: E402


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
    """Wall time at each step end; re-seed the dropout RNG at each step begin (the bare loop does the same)."""

    def __init__(self, seed: int) -> None:
        self.seed, self.ends = seed, []

    def on_step_begin(self, args, state, control, **kwargs):
        torch.manual_seed(self.seed + state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_trainer(model, args, entities, mentions, device, output_dir: str):
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
    clock = StepClock(args.seed)
    trainer.add_callback(clock)
    losses = record_losses(trainer)
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    steps = [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)]  # step k = end(k) - end(k-1)
    mining = clock.ends[0] - start if clock.ends else float("nan")
    return trainer, recorder, steps, [float(loss) for loss in losses], mining, total


def run_bare(model, trainer: NCETrainer, recorder: RecordingCollator, args, device):
    """The same steps in plain PyTorch on the same batches; returns (step seconds, losses, optimizer summary)."""
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    accepted = inspect.signature(type(inner).__init__).parameters
    settings = [{k: v for k, v in group.items() if k != "params"} for group in inner.param_groups]
    if any(group != settings[0] for group in settings):
        raise RuntimeError(f"the Trainer's parameter groups differ: {settings}")
    kwargs = {k: v for k, v in {**inner.defaults, **settings[0]}.items() if k in accepted}
    optimizer = type(inner)(model.parameters(), **kwargs)
    collator = recorder.collator
    model.train()
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if args.bf16
        else contextlib.nullcontext()
    )
    times, losses = [], []
    for step, (indices, recorded) in enumerate(recorder.batches[: args.warmup + args.steps]):
        sync(device)
        start = time.perf_counter()
        batch = collator([{"mention_index": i} for i in indices])
        collated = dict(batch)
        negative_log_probs = batch.pop("negative_log_probs").to(device)
        inputs = {k: v.to(device) for k, v in batch.items()}
        torch.manual_seed(args.seed + step)
        with autocast:
            scores = model(**inputs).scores
            loss = (
                adjusted_nce_loss(scores, negative_log_probs) if args.loss == "adjusted" else nce_loss(scores)
            )
        loss.backward()
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        sync(device)
        times.append(time.perf_counter() - start)
        if collated.keys() != recorded.keys() or not all(
            torch.equal(collated[k], v) for k, v in recorded.items()
        ):
            raise RuntimeError(f"step {step}: the collator rebuilt a different batch")
    flags = {k: kwargs[k] for k in ("lr", "betas", "eps", "weight_decay", "fused") if k in kwargs}
    return times, losses, f"{type(inner).__name__}({', '.join(f'{k}={v}' for k, v in flags.items())})"


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
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
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
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        with tempfile.TemporaryDirectory(prefix="train_step_bench_") as output_dir:
            trainer, recorder, t_steps, t_losses, mining, _ = run_trainer(
                model, args, entities, mentions, device, output_dir
            )
        bare_model = build_model(ModelArguments(architecture=arch), tokenizer)
        bare_model.load_state_dict(initial)
        bare_model.to(device)
        b_steps, b_losses, optimizer = run_bare(bare_model, trainer, recorder, args, device)
        t_timed = t_steps[args.warmup - 1 :][
            : args.steps
        ]  # interval k ends at step k; skip the warm-up steps
        b_timed = b_steps[args.warmup :][: args.steps]
        diff = max((abs(a - b) for a, b in zip(t_losses, b_losses, strict=False)), default=float("nan"))
        results.append(
            (arch, statistics.median(t_timed), statistics.median(b_timed), len(t_timed), diff, mining)
        )
        print(f"[{arch}: trainer steps {[round(s, 3) for s in t_steps]}]", file=sys.stderr)
        print(f"[{arch}: bare steps    {[round(s, 3) for s in b_steps]}]", file=sys.stderr)
        del trainer, model, bare_model

    print(f"\n{machine_line(device, with_load=False)}")
    print(
        f"world {args.world} ({len(entities)} entities); {args.batch_size} mentions x K={args.num_candidates} "
        f"candidates ({args.negatives} negatives mined once by the Trainer); max_length {args.max_length}; "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}; optimizer {optimizer}, constant lr, "
        f"max_grad_norm {args.max_grad_norm} both sides; Trainer logging_steps {args.logging_steps}; "
        f"median of {args.steps} steps after {args.warmup} warm-up steps\n"
    )
    print(
        "| arch | NCETrainer s/step | bare loop s/step | overhead | timed steps | max abs loss diff | mining s |"
    )
    print("|---|---|---|---|---|---|---|")
    for arch, t, b, count, diff, mining in results:
        print(
            f"| {arch} | {t:.3f} | {b:.3f} | {100 * (t / b - 1):+.1f}% | {count} | {diff:.1e} | {mining:.1f} |"
        )


if __name__ == "__main__":
    main()
