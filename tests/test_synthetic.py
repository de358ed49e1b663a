"""The Zeshel-size synthetic generator: Zeshel's worlds and counts (scaled), valid processed tables."""

from data_scripts.io import load_processed
from data_scripts.synthetic import ZESHEL_WORLDS, main, synthetic_zeshel


def test_full_scale_counts_are_zeshels():
    totals = {}
    for split, entities, mentions in ZESHEL_WORLDS.values():
        e, m = totals.get(split, (0, 0))
        totals[split] = (e + entities, m + mentions)
    assert totals == {"train": (332_632, 49_275), "val": (89_549, 10_000), "test": (70_140, 10_000)}


def test_scaled_tables_are_valid(tmp_path):
    main(["--output_dir", str(tmp_path / "synth"), "--scale", "0.002"])
    mentions, entities = load_processed(tmp_path / "synth")
    assert set(mentions) == {"train", "val", "test"}
    assert len(set(entities["world"])) == 16
    expected = sum(max(2, round(e * 0.002)) for _, e, _ in ZESHEL_WORLDS.values())
    assert len(entities) == expected
    lengths = [len(t.split()) for t in entities["text"]]
    assert 60 < sorted(lengths)[len(lengths) // 2] < 250  # median description ~120 words (+ title)
    train = mentions["train"]
    titles = dict(zip(entities["entity_id"], entities["title"], strict=True))
    assert all(titles[g] == m for g, m in zip(train["label_id"], train["mention"], strict=True))


def test_seeded():
    a, _ = synthetic_zeshel(0.001, seed=1)
    b, _ = synthetic_zeshel(0.001, seed=1)
    assert a["train"]["left_context"] == b["train"]["left_context"]
