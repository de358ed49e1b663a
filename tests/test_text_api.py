"""The input format carried by the model, and the text-level API in a clean interpreter (project off sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
from hf_models import DualEncoderModel, JointConfig, JointRerankerModel, RetrieverConfig, config_for
from hf_models.index.tables import pair_inputs
from hf_models.modeling.input_format import InputFormat
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE

from .conftest import REPO_ROOT, make_tiny_tables

MAX_LENGTH = 16  # short enough that the window cuts contexts (left and right)


# ---------------------------------------------------------------------- config contract
@pytest.mark.parametrize("config_class", [RetrieverConfig, JointConfig])
def test_config_fields_are_checked(config_class) -> None:
    config = config_class(max_length=32)
    assert InputFormat.from_config(config) == InputFormat(max_length=32)
    assert InputFormat.from_config(config).markers == ("[unused0]", "[unused1]", "[unused2]")
    with pytest.raises(ValueError, match="max_length"):
        config_class(max_length=4)
    with pytest.raises(ValueError, match="mention_start_marker"):
        config_class(mention_start_marker="")
    with pytest.raises(ValueError, match="three different"):
        config_class(title_marker="[unused0]")


def test_documented_text_format() -> None:
    fmt = InputFormat(max_length=32)
    assert fmt.mention_text("He met", "the Doctor", "on Gallifrey.") == (
        "He met [unused0] the Doctor [unused1] on Gallifrey."
    )
    assert fmt.mention_text("", "Dalek", "") == "[unused0] Dalek [unused1]"
    assert fmt.entity_text("The Doctor", "A Time Lord.") == "The Doctor [unused2] A Time Lord."


def test_text_errors_name_the_problem(tiny_bert_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    fmt = InputFormat(max_length=16)
    with pytest.raises(ValueError, match="mention_start_marker='\\[unused0\\]' is not one token"):
        fmt.marker_ids(tokenizer)  # the raw backbone tokenizer splits [unused0] into pieces
    assert prepare_tokenizer(tokenizer) == 0, "[unusedN] are in the vocabulary: no new ids"
    with pytest.raises(ValueError, match="exactly one"):
        fmt.encode_mentions(tokenizer, ["no markers here"])
    with pytest.raises(ValueError, match="no '\\[unused2\\]'"):
        fmt.encode_entities(tokenizer, ["title only"])
    with pytest.raises(ValueError, match="pass max_length"):
        InputFormat().encode_entities(tokenizer, ["a [unused2] b"])


# ---------------------------------------------------------------------- saved folders
def save_folder(model, tokenizer, folder: Path) -> Path:
    model.config.max_length = MAX_LENGTH
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_tables():
    mentions, entities = make_tiny_tables(
        {"alpha": "test"}, entities_per_world=5, mentions_per_world=3, seed=3
    )
    return mentions["test"], entities


@pytest.fixture(scope="module")
def saved_models(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    """dual, multi-4, poly-4 and joint saved as the recipes save them (config with the format + tokenizer)."""
    root = tmp_path_factory.mktemp("text_api")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    torch.manual_seed(0)
    folders = {}
    for name, m in (("dual", None), ("multi", 4), ("poly", 4)):
        model = MODEL_BY_ARCHITECTURE[name].from_encoder(str(tiny_bert_dir), **({"m": m} if m else {}))
        folders[name] = save_folder(model, tokenizer, root / name)
    folders["joint"] = save_folder(
        JointRerankerModel.from_encoder(str(tiny_bert_dir)), tokenizer, root / "joint"
    )
    return folders


def project_scores(folder: Path, mentions, entities) -> list[list[float]]:
    """Scores through the project's own pipeline: featurizer (at the recorded max_length) -> inputs -> forward."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer)
    config = json.loads((folder / "config.json").read_text())
    is_joint = config["model_type"] == "nce-joint"
    model_class = JointRerankerModel if is_joint else MODEL_BY_ARCHITECTURE[config["architecture"]]
    model = model_class.from_pretrained(folder).eval()
    m = featurize_mentions(mentions, tokenizer, max_length=config["max_length"]).with_format("torch")[:]
    e = featurize_entities(entities, tokenizer, max_length=config["max_length"]).with_format("torch")[:]
    with torch.no_grad():
        if not is_joint:
            mention_rep = model.encode_mentions(m["mention_input_ids"], m["mention_attention_mask"])
            entity_rep = model.encode_entities(e["entity_input_ids"], e["entity_attention_mask"])
            return model.score_all(mention_rep, entity_rep).tolist()
        rows = []
        for i in range(len(mentions)):
            num = len(entities)
            pairs = pair_inputs(
                m["mention_input_ids"][i : i + 1],
                m["mention_attention_mask"][i : i + 1],
                e["entity_input_ids"][None],
                e["entity_attention_mask"][None],
            )
            rows.append(model(**pairs).scores.view(num).tolist())
        return rows


CLEAN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    for name in ("hf_models", "data_scripts"):
        sys.modules[name] = None  # the project must not be importable: only the folder's own code
    import torch
    from transformers import AutoModel, AutoTokenizer

    request = json.load(open(sys.argv[1]))
    out = {}
    for name, folder in request["folders"].items():
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        fmt = model.input_format
        entity_texts = [fmt.entity_text(e["title"], e["text"]) for e in request["entities"]]
        scores = []
        for m in request["mentions"]:
            text = fmt.mention_text(m["left_context"], m["mention"], m["right_context"])
            scores.append(model.score_texts(text, entity_texts).tolist())
        tokenizer = AutoTokenizer.from_pretrained(folder)  # the raw saved tokenizer, nothing registered by hand
        sample = fmt.mention_text("the war", "doctor", "time") + " " + fmt.entity_text("dalek", "a ship")
        out[name] = {
            "scores": scores,
            "max_length": fmt.max_length,
            "raw_ids": tokenizer(sample, add_special_tokens=False)["input_ids"],
            "marker_ids": tokenizer.convert_tokens_to_ids(list(fmt.markers)),
        }
        if name != "joint":
            vectors = model.encode_entity_texts(entity_texts)
            out[name]["entity_shape"] = list(getattr(vectors, "vectors", vectors).shape)
            out[name]["mention_shape"] = list(getattr(*(lambda v: (v, "vectors", v))(
                model.encode_mention_texts([fmt.mention_text("a", "b", "c")]))).shape)
    json.dump(out, open(sys.argv[2], "w"))
    """
)


def run_clean(folders: dict[str, Path], mentions, entities, tmp_path: Path) -> dict:
    request = {
        "folders": {name: str(folder) for name, folder in folders.items()},
        "mentions": [dict(row) for row in mentions],
        "entities": [dict(row) for row in entities],
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TRANSFORMERS_VERBOSITY="error")
    subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            CLEAN_SCRIPT,
            str(tmp_path / "request.json"),
            str(tmp_path / "out.json"),
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=900,
    )
    return json.loads((tmp_path / "out.json").read_text())


def check_clean_results(folders: dict[str, Path], results: dict, mentions, entities, max_length: int) -> None:
    """The clean interpreter's text-level scores equal the project's; the raw saved tokenizer gives the marker ids."""
    for name, folder in folders.items():
        assert {"input_format.py", "modeling_text.py"} <= {p.name for p in folder.iterdir()}, name
        result = results[name]
        assert result["max_length"] == max_length
        torch.testing.assert_close(
            torch.tensor(result["scores"]),
            torch.tensor(project_scores(folder, mentions, entities)),
            atol=1e-5,
            rtol=1e-5,
            msg=f"{name}: the text-level API differs from the project's scores",
        )
        start, end, title = result["marker_ids"]
        assert [start, end, title] == [5, 6, 7]  # [unused0..2] of the tiny vocabulary
        raw = result["raw_ids"]
        assert raw.count(start) == raw.count(end) == raw.count(title) == 1, raw
        assert raw.index(start) < raw.index(end) < raw.index(title)


def test_saved_folder_scores_text_in_clean_interpreter(saved_models, tiny_tables, tmp_path) -> None:
    mentions, entities = tiny_tables
    results = run_clean(saved_models, mentions, entities, tmp_path)
    check_clean_results(saved_models, results, mentions, entities, MAX_LENGTH)
    hidden = 32
    assert results["dual"]["entity_shape"] == [len(entities), hidden]  # plain vectors
    assert results["dual"]["mention_shape"] == [1, hidden]
    assert results["multi"]["mention_shape"] == [1, hidden]
    assert results["multi"]["entity_shape"] == [len(entities), 4, hidden]  # m vectors per entity


def test_text_api_in_process_matches(saved_models, tiny_tables) -> None:
    mentions, entities = tiny_tables
    model = DualEncoderModel.from_pretrained(saved_models["dual"]).eval()
    fmt = model.input_format
    texts = [fmt.entity_text(row["title"], row["text"]) for row in entities]
    mention = mentions[0]
    scores = model.score_texts(
        fmt.mention_text(mention["left_context"], mention["mention"], mention["right_context"]), texts
    )
    vectors = model.encode_entity_texts(texts)
    query = model.encode_mention_texts(
        [fmt.mention_text(mention["left_context"], mention["mention"], mention["right_context"])]
    )
    torch.testing.assert_close(scores, (query @ vectors.T)[0])
    torch.testing.assert_close(
        scores, torch.tensor(project_scores(saved_models["dual"], mentions, entities)[0])
    )


def test_tokenizer_without_markers_is_refused(saved_models, tiny_bert_dir) -> None:
    model = DualEncoderModel.from_pretrained(saved_models["dual"])
    raw_backbone_tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    with pytest.raises(ValueError, match="is not one token"):
        model.score_texts("a [unused0] b [unused1] c", ["t [unused2] x"], tokenizer=raw_backbone_tokenizer)


def test_config_for_records_format() -> None:
    config = config_for("multi", m=4, max_length=64, title_marker="[SEP_T]")
    assert InputFormat.from_config(config).entity_text("A", "b") == "A [SEP_T] b"
    assert REPO_ROOT.exists()


def test_linker_uses_each_models_recorded_length(saved_models, caplog) -> None:
    from hf_models.linking.linker import EntityLinker

    linker = EntityLinker.from_pretrained(saved_models["dual"], reranker=saved_models["joint"], device="cpu")
    assert linker.max_length == linker.reranker_max_length == MAX_LENGTH
    with caplog.at_level("WARNING"):
        linker = EntityLinker.from_pretrained(saved_models["dual"], device="cpu", max_length=64)
    assert linker.max_length == 64 and "explicit override" in caplog.text
    with pytest.raises(ValueError, match="max_length"):
        InputFormat().resolve_max_length()
    assert InputFormat().resolve_max_length(None, 128) == 128


def marker_free_tokenizer(size: int):
    """A BERT tokenizer of ``size`` ids without [unusedN] (the featurizer then adds the markers as new ids)."""
    from transformers import BertTokenizerFast

    from .conftest import _vocab

    tokens = list(dict.fromkeys(t for t in _vocab() if not t.startswith("[unused")))
    tokens += [f"extra{i}" for i in range(size - len(tokens))]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def test_embeddings_grow_only_for_markers_the_featurizer_added(tiny_bert_dir, caplog) -> None:
    from hf_models.recipes.model_setup import fit_embeddings

    model = DualEncoderModel.from_encoder(str(tiny_bert_dir))
    rows = model.mention_encoder.get_input_embeddings().num_embeddings
    tokenizer = marker_free_tokenizer(rows - 3)
    assert prepare_tokenizer(tokenizer) == 3
    fit_embeddings(model, tokenizer)  # the new marker ids fit in the existing rows: nothing grows
    assert model.mention_encoder.get_input_embeddings().num_embeddings == rows

    tokenizer = marker_free_tokenizer(rows)  # as many ids as the encoder has rows, then 3 new marker ids
    assert prepare_tokenizer(tokenizer) == 3
    with caplog.at_level("WARNING"):
        fit_embeddings(model, tokenizer)
    assert model.mention_encoder.get_input_embeddings().num_embeddings == rows + 3
    assert model.entity_encoder.get_input_embeddings().num_embeddings == rows + 3
    assert model.config.mention_encoder["vocab_size"] == rows + 3
    assert "marker token(s) ['[unused0]', '[unused1]', '[unused2]'] the featurizer added" in caplog.text


def test_tokenizer_of_another_encoder_is_an_error(tiny_bert_dir) -> None:
    from hf_models.recipes.model_setup import fit_embeddings

    model = DualEncoderModel.from_encoder(str(tiny_bert_dir))
    tokenizer = marker_free_tokenizer(model.mention_encoder.get_input_embeddings().num_embeddings + 5)
    prepare_tokenizer(tokenizer)
    with pytest.raises(ValueError, match="does not belong to this encoder"):
        fit_embeddings(model, tokenizer)


def test_special_token_strings_in_text_read_the_same_on_both_paths(tiny_bert_dir):
    """The featurizer (training, linker) and the saved model's text API tokenize "[SEP]" / marker strings inside
    the text alike: as text."""
    import datasets
    from transformers import AutoTokenizer

    from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
    from hf_models.modeling.input_format import InputFormat

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    prepare_tokenizer(tokenizer)
    fmt = InputFormat(max_length=32)
    left, mention, right = "see the [SEP] table", "army", "is [CLS] big [unused2]"
    featurized = featurize_mentions(
        datasets.Dataset.from_list([{"left_context": left, "mention": mention, "right_context": right}]),
        tokenizer,
        max_length=32,
    )["mention_input_ids"][0]
    from_text = fmt.mention_ids_from_text(tokenizer, [fmt.mention_text(left, mention, right)])[0]
    assert featurized[: len(from_text)] == from_text and featurized.count(tokenizer.sep_token_id) == 1
    entity = {"entity_id": "e", "world": "w", "title": "a [CLS] b", "text": "c [SEP] d"}
    featurized = featurize_entities(datasets.Dataset.from_list([entity]), tokenizer, max_length=32)
    from_text = fmt.entity_ids_from_text(tokenizer, [fmt.entity_text(entity["title"], entity["text"])])[0]
    assert featurized["entity_input_ids"][0][: len(from_text)] == from_text
