"""Training data and the training run of the ELQ-style mention detector
(:class:`~hf_models.modeling.modeling_mention_detector.MentionDetectorModel`), from the processed mention tables.

Every processed mention row is a text (``left mention right``) with one labeled span. Rows cut from the same
document overlap, so a row's text usually contains other rows' labeled mentions too: :func:`detector_examples`
finds them (a row's mention with up to 3 words of context on each side, matched with Aho-Corasick) and labels
them as well, so they are not trained as negatives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick
import torch

from ..atomic import atomic_write_text
from ..linking.inputs import join_context

logger = logging.getLogger(__name__)

SIGNATURE_WORDS = 3


@dataclass
class DetectorExample:
    """A text and its labeled mention spans (character offsets, end exclusive); ``spans[0]`` is the row's own."""

    text: str
    spans: list[tuple[int, int]]
    world: str = ""


def _signature(left: str, mention: str, right: str) -> tuple[str, int, int]:
    sig_left = " ".join(left.split()[-SIGNATURE_WORDS:])
    sig_right = " ".join(right.split()[:SIGNATURE_WORDS])
    text, (start, end) = join_context(sig_left, mention, sig_right)
    return text, start, end


def _inside_word(text: str, first: int, last: int) -> bool:
    """Whether ``text[first : last + 1]`` starts or ends inside a word (a signature is whole words)."""
    before = text[first - 1] if first > 0 else " "
    after = text[last + 1] if last + 1 < len(text) else " "
    return before.isalnum() or after.isalnum()


def detector_examples(mentions, min_signature_chars: int = 12) -> list[DetectorExample]:
    """One example per mention row (``left_context``, ``mention``, ``right_context``, ``world``) with every
    labeled mention of its world that occurs in its text (whitespace normalised)."""
    rows = [
        (
            " ".join(str(r["left_context"] or "").split()),
            " ".join(str(r["mention"] or "").split()),
            " ".join(str(r["right_context"] or "").split()),
            str(r.get("world") or ""),
        )
        for r in mentions
    ]
    automata: dict[str, ahocorasick.Automaton] = {}
    for left, mention, right, world in rows:
        signature, start, end = _signature(left, mention, right)
        if mention and len(signature) >= min_signature_chars:
            automaton = automata.setdefault(world, ahocorasick.Automaton())
            automaton.add_word(signature, (len(signature), start, end))
    for automaton in automata.values():
        automaton.make_automaton()
    examples = []
    for left, mention, right, world in rows:
        if not mention:
            continue
        text, own = join_context(left, mention, right)
        spans = [own]
        automaton = automata.get(world)
        for last, (length, start, end) in automaton.iter(text) if automaton is not None else []:
            first = last - length + 1
            if _inside_word(text, first, last):  # e.g. "war of the king" inside "prewar of the king"
                continue
            span = (first + start, first + end)
            if all(span[1] <= s or span[0] >= e for s, e in spans):
                spans.append(span)
        examples.append(DetectorExample(text, spans, world))
    return examples


def featurize_detector_examples(
    examples: Sequence[DetectorExample], tokenizer, max_length: int, max_span_width: int
) -> list[dict[str, torch.Tensor]]:
    """One window of ``max_length`` pieces per example, centred on its own span, with span labels [S, 2]
    (wordpiece start/end, inclusive) of every labeled span inside the window and word-boundary masks."""
    encoded = tokenizer(
        [e.text for e in examples], add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    features = []
    for n, example in enumerate(examples):
        ids, offsets, words = encoded["input_ids"][n], encoded["offset_mapping"][n], encoded.word_ids(n)
        token_spans = []
        for start, end in example.spans:
            inside = [t for t, (s, e) in enumerate(offsets) if s >= start and e <= end and e > s]
            token_spans.append((inside[0], inside[-1]) if inside else None)
        if token_spans[0] is None:
            continue
        room = max_length - 2
        own_start, own_end = token_spans[0]
        first = max(0, min(own_start - (room - (own_end - own_start + 1)) // 2, len(ids) - room))
        last = min(len(ids), first + room)
        window = ids[first:last]
        labels = [
            (s - first + 1, e - first + 1)
            for span in token_spans
            if span is not None and span[0] >= first and span[1] < last and span[1] - span[0] < max_span_width
            for s, e in [span]
        ]
        length = len(window) + 2
        start_mask = torch.zeros(max_length, dtype=torch.bool)
        end_mask = torch.zeros(max_length, dtype=torch.bool)
        for t in range(first, last):
            start_mask[t - first + 1] = t == 0 or words[t - 1] != words[t]
            end_mask[t - first + 1] = t + 1 == len(words) or words[t + 1] != words[t]
        features.append(
            {
                "input_ids": torch.tensor([cls, *window, sep] + [pad] * (max_length - length)),
                "attention_mask": torch.tensor([1] * length + [0] * (max_length - length)),
                "start_mask": start_mask,
                "end_mask": end_mask,
                "span_labels": torch.tensor(labels or [(-1, -1)], dtype=torch.long),
            }
        )
    return features


def collate_detector_features(features: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack windows; span labels [B, S_max, 2] padded with -1."""
    width = max(f["span_labels"].shape[0] for f in features)
    labels = torch.full((len(features), width, 2), -1, dtype=torch.long)
    for i, f in enumerate(features):
        labels[i, : f["span_labels"].shape[0]] = f["span_labels"]
    batch = {
        k: torch.stack([f[k] for f in features])
        for k in ("input_ids", "attention_mask", "start_mask", "end_mask")
    }
    batch["span_labels"] = labels
    return batch


@dataclass
class MentionDetectorArguments:
    encoder: str = field(
        default="embedded",
        metadata={
            "help": "Backbone: any BERT-family name or path; 'embedded' = the packaged all-MiniLM-L6-v2."
        },
    )
    init_from: str | None = field(
        default=None, metadata={"help": "A saved retriever folder: start from its mention encoder."}
    )
    dataset_dir: str = field(
        default="data/glossary_el", metadata={"help": "Processed tables (labeled spans)."}
    )
    train_split: str = field(
        default="train", metadata={"help": "Split whose labeled spans train the detector."}
    )
    eval_split: str | None = field(
        default="val", metadata={"help": "Split evaluated after training (P/R/F1)."}
    )
    max_length: int = field(
        default=128, metadata={"help": "Wordpieces per window ([CLS] and [SEP] included)."}
    )
    max_span_width: int = field(default=10, metadata={"help": "Longest candidate span in wordpieces."})
    threshold: float = field(
        default=0.5, metadata={"help": "Span probability above which a span is a mention."}
    )
    tune_threshold: bool = field(
        default=True,
        metadata={
            "help": "After training, set the saved threshold to the one of 0.05, 0.10, ..., 0.95 with the best "
            "strict-span F1 on eval_split (otherwise keep --threshold)."
        },
    )
    max_train_mentions: int | None = field(
        default=None, metadata={"help": "Keep N training rows (a seeded sample across all worlds)."}
    )
    max_eval_mentions: int | None = field(
        default=None, metadata={"help": "Keep the first N evaluation rows."}
    )


def build_detector(args: MentionDetectorArguments):
    """A fresh detector on the encoder (or on a saved retriever's mention encoder) and its tokenizer."""
    from transformers import AutoTokenizer

    from ..modeling.modeling_mention_detector import MentionDetectorModel
    from .recipe_args import resolve_encoder

    config = {
        "max_span_width": args.max_span_width,
        "max_length": args.max_length,
        "threshold": args.threshold,
    }
    if args.init_from:
        from ..linking.loading import load_model
        from ..modeling.modeling_retriever import RetrieverModel

        retriever = load_model(args.init_from, RetrieverModel)
        encoder = retriever.mention_encoder
        model = MentionDetectorModel(
            MentionDetectorModel.config_class(encoder=encoder.config.to_dict(), **config)
        )
        model.encoder.load_state_dict(encoder.state_dict())
        return model, AutoTokenizer.from_pretrained(args.init_from)
    path = resolve_encoder(args.encoder)
    return MentionDetectorModel.from_encoder(path, **config), AutoTokenizer.from_pretrained(path)


def evaluate_detector(detector, examples: Sequence[DetectorExample]) -> dict[str, float]:
    """Strict-span P/R/F1 of a detector callable on examples' texts against their labeled spans."""
    from ..index.evaluation import mention_detection_metrics

    predicted = detector([e.text for e in examples])
    return mention_detection_metrics([e.spans for e in examples], predicted)


def tune_threshold(detector, examples: Sequence[DetectorExample]) -> float:
    """The threshold of 0.05, 0.10, ..., 0.95 with the best strict-span F1 on ``examples`` (the first best)."""
    from ..index.evaluation import mention_detection_metrics
    from ..linking.detection import greedy_spans

    candidates = detector.candidates([e.text for e in examples], floor=0.05)
    gold = [e.spans for e in examples]
    best, best_f1 = detector.threshold, -1.0
    for step in range(1, 20):
        threshold = step / 20
        predicted = [[(s, e) for s, e, _ in greedy_spans(c, threshold)] for c in candidates]
        f1 = mention_detection_metrics(gold, predicted)["f1"]
        if f1 > best_f1:
            best, best_f1 = threshold, f1
    if best_f1 <= 0.0:  # no threshold finds a gold span: keep the configured one rather than the lowest tried
        logger.warning(
            "detection threshold: strict-span F1 is 0 at every threshold on the evaluation rows; keeping %.2f",
            detector.threshold,
        )
        return detector.threshold
    logger.info("detection threshold %.2f: strict-span F1 %.2f on the evaluation rows", best, best_f1)
    return best


def run_mention_detector_recipe(
    argv: list[str] | None = None, default_config: str | None = None
) -> dict[str, Any]:
    """Parse YAML + flags, train the detector with ``transformers.Trainer``, evaluate, save model + tokenizer."""
    from transformers import Trainer, TrainingArguments, set_seed

    from data_scripts.io import load_processed

    from ..linking.detection import TrainedDetector
    from .config_parsing import parse_config

    args, training_args = parse_config([MentionDetectorArguments, TrainingArguments], argv, default_config)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)
    mentions, _ = load_processed(args.dataset_dir)
    if args.train_split not in mentions:
        raise ValueError(
            f"--train_split {args.train_split!r} is not a split of {args.dataset_dir} ({list(mentions)})"
        )
    if args.eval_split is not None and args.eval_split not in mentions:
        raise ValueError(
            f"--eval_split {args.eval_split!r} is not a split of {args.dataset_dir} ({list(mentions)})"
        )
    model, tokenizer = build_detector(args)
    train_rows = mentions[args.train_split]
    if args.max_train_mentions and args.max_train_mentions < len(train_rows):  # a seeded sample of all worlds
        train_rows = train_rows.shuffle(seed=training_args.seed).select(range(args.max_train_mentions))
    train = featurize_detector_examples(
        detector_examples(train_rows), tokenizer, args.max_length, args.max_span_width
    )
    logger.info("training the mention detector on %d windows", len(train))
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train, data_collator=collate_detector_features
    )
    result = trainer.train()
    metrics: dict[str, Any] = {"train_loss": result.training_loss}
    if args.eval_split is not None:
        rows = mentions[args.eval_split]
        if args.max_eval_mentions:
            rows = rows.select(range(min(args.max_eval_mentions, len(rows))))
        detector = TrainedDetector(model.eval(), tokenizer, threshold=args.threshold)
        examples = detector_examples(rows)
        if args.tune_threshold:
            model.config.threshold = detector.threshold = tune_threshold(detector, examples)
            metrics["threshold"] = detector.threshold
        metrics[args.eval_split] = evaluate_detector(detector, examples)
    output = Path(training_args.output_dir)
    trainer.save_model(str(output))
    tokenizer.save_pretrained(str(output))
    atomic_write_text(output / "metrics.json", json.dumps(metrics, indent=2))
    logger.info("mention detector metrics: %s", metrics)
    return metrics
