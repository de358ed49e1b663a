"""A dual retriever exported to sentence-transformers gives the retriever's vectors (to 1e-5)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer
from data_scripts.zeshel import read_zeshel
from hf_models import MultiVectorModel
from hf_models.publishing.st_export import entity_text, export_sentence_transformer, mention_text

from .test_linker import save_retriever

SHORT = [  # contexts short enough that the paper's window keeps them whole
    {"left_context": "the doctor met a", "mention": "dalek", "right_context": "on the ship ."},
    {"left_context": "", "mention": "star wars", "right_context": "is a great war of the republic"},
]


def columns(dataset, names):
    return dataset.with_format("torch", columns=names)[:]


def test_st_export_matches_the_retriever(tiny_bert_dir, zeshel_sample_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from hf_models import DualEncoderModel

    folder = save_retriever(DualEncoderModel, tiny_bert_dir, tmp_path / "dual")
    export_sentence_transformer(folder, tmp_path / "st", max_length=64)
    st = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    retriever = DualEncoderModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer)
    import datasets

    _, entities = read_zeshel(zeshel_sample_dir, splits=("train",))
    entity_inputs = columns(
        featurize_entities(entities, tokenizer, 64), ["entity_input_ids", "entity_attention_mask"]
    )
    mention_inputs = columns(
        featurize_mentions(datasets.Dataset.from_list(SHORT), tokenizer, 64),
        ["mention_input_ids", "mention_attention_mask"],
    )
    with torch.no_grad():
        expected_entities = retriever.encode_entities(*entity_inputs.values()).vectors[:, 0]
        expected_mentions = retriever.encode_mentions(*mention_inputs.values()).vectors[:, 0]
    documents = st.encode_document(
        [entity_text(t, x) for t, x in zip(entities["title"], entities["text"], strict=True)],
        convert_to_tensor=True,
    )
    queries = st.encode_query(
        [mention_text(m["left_context"], m["mention"], m["right_context"], st.tokenizer, 64) for m in SHORT],
        convert_to_tensor=True,
    )
    torch.testing.assert_close(documents, expected_entities, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(queries, expected_mentions, atol=1e-5, rtol=1e-5)
    scores = st.similarity(queries, documents)
    torch.testing.assert_close(
        scores,
        retriever.score_all(
            retriever.encode_mentions(*mention_inputs.values()),
            retriever.encode_entities(*entity_inputs.values()),
        ).detach(),
        atol=1e-4,
        rtol=1e-5,
    )


def test_multi_vector_export_is_refused(tiny_bert_dir, tmp_path):
    folder = save_retriever(MultiVectorModel, tiny_bert_dir, tmp_path / "multi", m=4)
    with pytest.raises(ValueError, match="only dual retrievers export"):
        export_sentence_transformer(folder, tmp_path / "st")


def test_export_reads_the_recorded_input_format(tiny_bert_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from hf_models import DualEncoderModel

    folder = save_retriever(DualEncoderModel, tiny_bert_dir, tmp_path / "dual")
    with pytest.raises(ValueError, match="records no input length"):
        export_sentence_transformer(folder, tmp_path / "st-unknown")
    model = DualEncoderModel.from_pretrained(folder)
    model.config.max_length = 40
    model.save_pretrained(folder)
    export_sentence_transformer(folder, tmp_path / "st")
    st = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert st.max_seq_length == 40
    ids = st.tokenizer("a [unused0] b [unused1] c [unused2] d", add_special_tokens=False)["input_ids"]
    assert [ids[1], ids[3], ids[5]] == st.tokenizer.convert_tokens_to_ids(
        ["[unused0]", "[unused1]", "[unused2]"]
    )


def test_mean_pooling_cosine_dual_exports_its_own_score(tiny_bert_dir, tmp_path):
    """A dual with the "mean" reduction and cosine similarity: ST mean-pools, normalizes; scale * ST = retriever."""
    from sentence_transformers import SentenceTransformer

    from hf_models import DualEncoderModel

    kwargs = {"query_reduction": "mean", "key_reduction": "mean", "similarity": "cosine", "max_length": 32}
    folder = save_retriever(DualEncoderModel, tiny_bert_dir, tmp_path / "dual", **kwargs)
    export_sentence_transformer(folder, tmp_path / "st")
    st = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert st.similarity_fn_name == "cosine"
    retriever = DualEncoderModel.from_pretrained(folder).eval()
    fmt = retriever.input_format
    texts = [
        fmt.entity_text("dalek", "a mutant in a ship"),
        fmt.entity_text("jedi", "a knight of the republic"),
    ]
    mention = [mention_text("the doctor met a", "dalek", "on the ship .", st.tokenizer, st.max_seq_length)]
    st_scores = st.similarity(
        st.encode_query(mention, convert_to_tensor=True), st.encode_document(texts, convert_to_tensor=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer)  # save_retriever saved the backbone's tokenizer, without the markers
    expected = retriever.score_texts(
        fmt.mention_text("the doctor met a", "dalek", "on the ship ."), texts, tokenizer=tokenizer
    )
    torch.testing.assert_close(
        st_scores[0] * retriever.config.similarity_scale, expected, atol=1e-4, rtol=1e-4
    )
