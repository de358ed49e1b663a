"""The ELQ-style mention detector: span scores, training data from processed tables, a training step lowers the
loss, save/load round trip, detection through the linker; the whole-pipeline metrics."""

from __future__ import annotations

import pytest
import torch

from hf_models import MentionDetectorModel
from hf_models.index.evaluation import end_to_end_linking_metrics, mention_detection_metrics
from hf_models.linking.detection import TrainedDetector
from hf_models.modeling.modeling_mention_detector import span_logits
from hf_models.recipes.detector_training import (
    collate_detector_features,
    detector_examples,
    featurize_detector_examples,
)

ROWS = [  # two rows cut from the same document: each text holds the other's labeled mention too
    {
        "world": "w",
        "left_context": "the jedi fought the",
        "mention": "clone trooper",
        "right_context": "in the war of the republic",
    },
    {
        "world": "w",
        "left_context": "the jedi fought the clone trooper in the",
        "mention": "war",
        "right_context": "of the republic",
    },
    {"world": "w", "left_context": "a", "mention": "dalek", "right_context": "was in the time war"},
]


def test_span_logits_are_start_plus_end_plus_inside():
    start, end, inside = torch.randn(3, 2, 7).unbind(0)
    logits = span_logits(start, end, inside, max_width=3)  # [2, 7, 3]
    for b, i, w in [(0, 0, 0), (1, 2, 2), (0, 4, 1)]:
        expected = start[b, i] + end[b, i + w] + inside[b, i : i + w + 1].sum()
        torch.testing.assert_close(logits[b, i, w], expected)
    assert torch.isinf(logits[:, 6, 1:]).all()  # past the end


def test_examples_label_every_known_mention_of_the_text():
    examples = detector_examples(ROWS)
    first = examples[0]
    assert [first.text[s:e] for s, e in first.spans] == ["clone trooper", "war"]
    assert [examples[1].text[s:e] for s, e in examples[1].spans] == ["war", "clone trooper"]
    assert [examples[2].text[s:e] for s, e in examples[2].spans] == ["dalek"]


def test_examples_never_label_a_span_inside_a_word():
    """A signature once matched inside a longer word ("prewar of the republic"), a positive no window can hold."""
    rows = [
        {"world": "w", "left_context": "", "mention": "war", "right_context": "of the republic"},
        {"world": "w", "left_context": "we", "mention": "saw", "right_context": "the prewar of the republic"},
    ]
    examples = detector_examples(rows)
    assert [examples[1].text[s:e] for s, e in examples[1].spans] == ["saw"]


@pytest.fixture(scope="module")
def detector_and_tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model = MentionDetectorModel.from_encoder(str(tiny_bert_dir), max_span_width=4, max_length=24)
    return model, AutoTokenizer.from_pretrained(tiny_bert_dir)


def test_training_step_lowers_the_loss_and_save_load_round_trips(detector_and_tokenizer, tmp_path):
    model, tokenizer = detector_and_tokenizer
    features = featurize_detector_examples(
        detector_examples(ROWS), tokenizer, max_length=24, max_span_width=4
    )
    batch = collate_detector_features(features)
    assert batch["span_labels"].shape == (3, 2, 2) and (batch["span_labels"][0] >= 0).all()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(5):
        loss = model(**batch).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0], losses

    model.eval()
    model.save_pretrained(tmp_path / "detector")
    tokenizer.save_pretrained(tmp_path / "detector")
    loaded = TrainedDetector.from_pretrained(tmp_path / "detector")
    assert isinstance(loaded.model, MentionDetectorModel) and loaded.model.config.max_span_width == 4
    inputs = {k: v for k, v in batch.items() if k != "span_labels"}
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**inputs).span_logits, model(**inputs).span_logits)


def test_trained_detector_returns_word_bounded_spans_over_long_texts(detector_and_tokenizer):
    model, tokenizer = detector_and_tokenizer
    texts = ["the jedi fought the clone trooper " * 6, "Zoë and the dalek", ""]
    detector = TrainedDetector(model.eval(), tokenizer, threshold=0.01)  # windows of 24 pieces, overlapping
    found = detector.scored(texts)
    assert found[2] == [] and found[0] and found[1]
    for text, spans in zip(texts, found, strict=True):
        assert spans == sorted(spans)
        for (start, end, prob), following in zip(spans, [*spans[1:], (len(text), 0, 0)], strict=False):
            assert end <= following[0] and 0.01 < prob <= 1  # no overlaps
            assert text[start:end].strip() == text[start:end]
            assert (start == 0 or not text[start - 1].isalnum()) and (
                end == len(text) or not text[end].isalnum()
            )


def test_whole_pipeline_metrics():
    gold = [[(0, 4), (10, 15)], [(3, 5)]]
    predicted = [[(0, 4), (10, 14)], [(3, 5), (7, 9)]]
    detection = mention_detection_metrics(gold, predicted)
    assert detection["precision"] == pytest.approx(50.0) and detection["recall"] == pytest.approx(200 / 3)
    assert detection["f1"] == pytest.approx(2 * 50 * (200 / 3) / (50 + 200 / 3))
    linked = end_to_end_linking_metrics(
        [[(0, 4, "a"), (10, 15, "b")], [(3, 5, "c")]],
        [[(0, 4, "a"), (10, 15, "x")], [(3, 5, None), (7, 9, "d")]],  # wrong entity; NIL is no prediction
    )
    assert (linked["num_correct"], linked["num_predicted"], linked["num_gold"]) == (1, 3, 3)
    assert linked["f1"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="differ in number"):
        mention_detection_metrics(gold, predicted[:1])


def test_recipe_trains_saves_and_evaluates(tiny_bert_dir, tmp_path):
    """recipes/mention_detector.py with its YAML, on 16 rows of the embedded data and the tiny BERT."""
    import json
    import runpy
    from pathlib import Path

    from transformers import AutoModel

    script = Path(__file__).resolve().parents[1] / "recipes" / "mention_detector.py"
    main = runpy.run_path(str(script))["main"]
    overrides = {"encoder": str(tiny_bert_dir), "max_train_mentions": "16", "max_eval_mentions": "8"}
    overrides.update(max_steps="2", max_length="32", output_dir=str(tmp_path / "out"), logging_steps="1")
    metrics = main([item for key, value in overrides.items() for item in (f"--{key}", value)])
    assert metrics["train_loss"] > 0 and metrics["val"]["num_gold"] >= 8
    assert 0 < metrics["threshold"] < 1  # tuned on the eval split and saved in the config
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["val"]["num_gold"] == metrics["val"]["num_gold"]
    saved_model = AutoModel.from_pretrained(tmp_path / "out")
    assert type(saved_model).__name__ == "MentionDetectorModel"
    assert saved_model.config.threshold == metrics["threshold"]


def test_evaluate_module_span_tasks_equal_the_project_functions():
    from pathlib import Path

    import evaluate

    path = str(Path(__file__).resolve().parents[1] / "metrics" / "entity_linking")
    predictions, references = [["0:4:a", "10:15:x"], ["3:5:", "7:9:d"]], [["0:4:a", "10:15:b"], ["3:5:c"]]
    linked = evaluate.load(path, "end_to_end").compute(predictions=predictions, references=references)
    assert (linked["num_correct"], linked["num_predicted"], linked["num_gold"]) == (1, 3, 3)

    def spans(documents, with_entity):
        parsed = [[item.split(":") for item in document] for document in documents]
        return [
            [(int(s), int(e), x or None) if with_entity else (int(s), int(e)) for s, e, x in d]
            for d in parsed
        ]

    assert linked == pytest.approx(
        end_to_end_linking_metrics(spans(references, True), spans(predictions, True))
    )
    detected = evaluate.load(path, "detection").compute(predictions=predictions, references=references)
    assert detected == pytest.approx(
        mention_detection_metrics(spans(references, False), spans(predictions, False))
    )
    assert detected["precision"] == pytest.approx(75.0) and detected["recall"] == pytest.approx(100.0)
    ranking = evaluate.load(path).compute(predictions=[["e1", "e2"]], references=["e2"], k=2)
    assert ranking["recall@2"] == pytest.approx(100.0)


def test_tuning_keeps_the_configured_threshold_when_nothing_is_found():
    """F1 0 at every threshold once saved the lowest one tried (0.05), the most permissive."""
    from types import SimpleNamespace

    from hf_models.recipes.detector_training import tune_threshold

    detector = SimpleNamespace(threshold=0.5, candidates=lambda texts, floor: [{} for _ in texts])
    assert tune_threshold(detector, detector_examples(ROWS)) == 0.5
