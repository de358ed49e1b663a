"""End-to-end linking of raw text with tiny random models: the four input kinds agree, several mentions per text
(non-ASCII too) get exact character offsets, NIL under the threshold, and the dictionary detector's matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_models.linking import DictionaryDetector, EntityLinker, parse_marked

from .test_linker import save_retriever

KB = [
    {"entity_id": "e-jedi", "title": "jedi", "text": "jedi a knight of the force who was a general"},
    {"entity_id": "e-dalek", "title": "dalek", "text": "dalek a war machine of the time war"},
    {"entity_id": "e-lord", "title": "time lord", "text": "time lord the people of the doctor"},
    {
        "entity_id": "e-clone",
        "title": "clone trooper",
        "text": "clone trooper a soldier of the republic army",
    },
    {"entity_id": "e-zoe", "title": "Zoë Café", "text": "Zoë Café a small house in the old city"},
    {
        "entity_id": "e-sith",
        "title": "sith",
        "text": "sith the dark side of the force",
        "aliases": ["dark lord"],
    },
]


@pytest.fixture(scope="module")
def linker(tiny_bert_dir, tmp_path_factory) -> EntityLinker:
    from datasets import Dataset

    from hf_models import DualEncoderModel

    folder = save_retriever(DualEncoderModel, tiny_bert_dir, tmp_path_factory.mktemp("dual"))
    table = Dataset.from_list([{"aliases": [], **row} for row in KB])
    return EntityLinker.from_pretrained(folder, max_length=32, show_progress=False).build_index(table)


def test_four_input_kinds_give_the_same_links(linker):
    text = "In the war the jedi fought a dalek ."
    start = text.index("jedi")
    inputs = [
        text,  # plain text: detected by the dictionary over the index's titles
        {"text": text, "spans": [[start, start + 4]]},
        "In the war the [START_ENT] jedi [END_ENT] fought a dalek .",
        {"context_left": "In the war the", "mention": "jedi", "context_right": "fought a dalek ."},
    ]
    results = linker.link(inputs, top_k=4)
    assert [(m.start, m.end, m.surface) for m in results[0].mentions] == [
        (start, start + 4, "jedi"),
        (text.index("dalek"), text.index("dalek") + 5, "dalek"),
    ]
    links = []
    for result in results:
        assert result.text == text
        (mention,) = [m for m in result.mentions if m.surface == "jedi"]
        assert (mention.start, mention.end) == (start, start + 4)
        links.append([(e.entity_id, round(e.score, 4), round(e.probability, 4)) for e in mention.entities])
    assert all(link == links[0] for link in links[1:]), links
    assert len(links[0]) == 4 and links[0][0][0] in {row["entity_id"] for row in KB}


def test_several_mentions_get_their_own_offsets_non_ascii(linker):
    texts = [
        "Zoë Café met the time lord, not a timelord; the dalek and a clone trooper — then the dark lord.",
        "naïve jedi and Sith in Zürich",
        "",
        "nothing to see here",
    ]
    results = linker.link(texts, top_k=3)
    assert [m.surface for m in results[0].mentions] == [
        "Zoë Café",
        "time lord",
        "dalek",
        "clone trooper",
        "dark lord",
    ]
    assert [m.surface for m in results[1].mentions] == ["jedi", "Sith"]
    assert results[2].mentions == [] and results[3].mentions == []
    for text, result in zip(texts, results, strict=True):
        for mention in result.mentions:
            assert text[mention.start : mention.end] == mention.surface
            assert len(mention.entities) == 3 and not mention.nil
            assert mention.entities[0].description  # the entity's short description
    marked = "[START_ENT]Zoë Café[END_ENT] and the [START_ENT] time lord [END_ENT]!"
    clean, spans = parse_marked(marked, "x")
    assert clean == "Zoë Café and the time lord!" and [clean[s:e] for s, e in spans] == [
        "Zoë Café",
        "time lord",
    ]
    (result,) = linker.link([marked], top_k=2)
    assert [(m.start, m.end) for m in result.mentions] == spans


def test_nil_below_threshold(linker):
    text = "the jedi and the dalek"
    (uniform,) = linker.link([text], top_k=6, nil_threshold=0.9)  # 6 candidates: best probability < 0.9
    assert all(m.nil and m.entity_id is None for m in uniform.mentions)
    assert all(m.entities[0].probability < 0.9 for m in uniform.mentions)
    (confident,) = linker.link([text], top_k=6, nil_threshold=0.0)
    assert all(not m.nil and m.entity_id == m.entities[0].entity_id for m in confident.mentions)
    (single,) = linker.link([text], top_k=1, nil_threshold=0.9)  # one candidate has probability 1
    assert all(not m.nil and m.entities[0].probability == pytest.approx(1.0) for m in single.mentions)
    with pytest.raises(ValueError, match="nil_threshold must be a probability"):
        linker.link([text], nil_threshold=2)


def test_dictionary_detector_word_boundaries_longest_match_case_stop_list():
    detector = DictionaryDetector(["time lord", "lord", "war", "the", "C", "Lisp Machine", "lisp"])
    text = "The Time  Lord of warlords and a time lordship: WAR; a LISP machine, not lisps, in C."
    found = [text[s:e] for s, e in detector.find(text)]
    # multi-word title at word boundaries (case folded, whitespace run), not inside 'warlords' / 'lordship';
    # longest match wins ('Time  Lord' over 'Lord'); 'the' (stop list) and 'C' (too short) are never matched
    assert found == ["Time  Lord", "WAR", "LISP machine"]
    assert DictionaryDetector(["Time Lord"], case_sensitive=True).find("time lord, Time Lord") == [(11, 20)]


def test_link_rejects_a_bare_string(linker):
    with pytest.raises(TypeError, match=r"for one text call link\(\[text\]\)"):
        linker.link("the jedi")


def test_aliases_column_is_kept_in_the_saved_index(linker, tmp_path: Path):
    folder = linker.save_index(tmp_path / "kb")
    reloaded = EntityLinker(linker.retriever, linker.tokenizer, show_progress=False).load_index(folder)
    (result,) = reloaded.link(["beware the dark lord"], top_k=2)
    assert [m.surface for m in result.mentions] == ["dark lord"]
