"""Length-sorted, token-budgeted encoding and encode-once reuse of world encodings (issue 13)."""

import pytest
import torch

from hf_models.index.encoding import encode_in_batches, length_sorted_batches, model_state_key
from hf_models.index.entity_index import EntityIndex
from hf_models.index.evaluation import retrieve, retrieve_splits
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE
from hf_models.training.trainer import NCETrainer, ReleaseEncodingsCallback
from tests.test_trainer import tiny_args


def make_model(tiny_bert_dir, architecture="som"):
    torch.manual_seed(0)
    return MODEL_BY_ARCHITECTURE[architecture].from_encoder(str(tiny_bert_dir)).eval()


def varied_lengths(input_ids: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same rows cut to random lengths in [2, T] (padding id 0, mask 0 past the cut)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, input_ids.shape[1] + 1, (input_ids.shape[0],), generator=generator)
    mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return input_ids * mask, mask


class CountingEncoder:
    """Wrap a model's encode function, counting the rows it is asked to encode."""

    def __init__(self, model, name: str) -> None:
        self.rows, self.calls, self.inner = 0, 0, getattr(model, name)
        setattr(model, name, self)

    def __call__(self, input_ids, attention_mask):
        self.rows += input_ids.shape[0]
        self.calls += 1
        return self.inner(input_ids, attention_mask)


def test_length_sorted_batches_cover_every_row_once_under_the_budget():
    lengths = torch.tensor([3, 40, 7, 7, 64, 1, 0, 12, 33, 5])
    batches = length_sorted_batches(lengths, max_tokens=64)
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert batches[0][0] == 4  # the longest row opens the first batch
    for batch in batches:
        width = int(lengths[batch].max().clamp(min=1))
        assert int(lengths[batch[0]].clamp(min=1)) == width
        assert len(batch) * width <= 64 or len(batch) == 1
    assert [len(b) for b in batches][-1] > 1  # the short rows share batches
    with pytest.raises(ValueError, match="max_tokens"):
        length_sorted_batches(lengths, max_tokens=0)


@pytest.mark.parametrize(("architecture", "width"), [("som", None), ("dual", 1), ("multi", 8)])
def test_sorted_encoding_restores_order_and_matches_one_row_at_a_time(
    tiny_bert_dir, tiny_el, architecture, width
):
    _, entities, _ = tiny_el
    model = make_model(tiny_bert_dir, architecture)
    ids, mask = varied_lengths(entities.input_ids[:12])
    kwargs = dict(device=torch.device("cpu"), show_progress=False)
    sorted_rep = encode_in_batches(model.encode_entities, ids, mask, batch_size=4, **kwargs)
    reference = [
        encode_in_batches(model.encode_entities, ids[i : i + 1], mask[i : i + 1], batch_size=1, **kwargs)
        for i in range(ids.shape[0])
    ]
    longest = int(mask.sum(1).max())
    assert sorted_rep.vectors.shape[:2] == (ids.shape[0], width or longest)
    for i, ref in enumerate(reference):
        cols = ref.vectors.shape[1]
        assert torch.equal(sorted_rep.mask[i, :cols], ref.mask[0])
        assert not sorted_rep.mask[i, cols:].any()
        torch.testing.assert_close(sorted_rep.vectors[i, :cols], ref.vectors[0], atol=2e-5, rtol=1e-4)
        assert not sorted_rep.vectors[i, cols:].any()  # padding columns are zero
    # a token budget instead of a row count: short rows fill bigger batches, same result
    budget = encode_in_batches(model.encode_entities, ids, mask, batch_size=1, max_tokens=64, **kwargs)
    torch.testing.assert_close(budget.vectors, sorted_rep.vectors, atol=2e-5, rtol=1e-4)
    assert torch.equal(budget.mask, sorted_rep.mask)
    # no_grad instead of inference_mode: the same numbers
    plain = encode_in_batches(model.encode_entities, ids, mask, batch_size=8, inference_mode=False, **kwargs)
    torch.testing.assert_close(plain.vectors, sorted_rep.vectors, atol=2e-5, rtol=1e-4)
    assert not sorted_rep.vectors.is_inference()  # callers may edit the table in place


def test_model_state_key_sees_optimizer_steps_loads_and_data_edits(tiny_bert_dir):
    model = make_model(tiny_bert_dir, "dual")
    key = model_state_key(model)
    assert model_state_key(model) == key
    param = next(model.parameters())
    param.data.add_(1.0)  # bypasses the version counter; the sum sees it
    assert model_state_key(model) != key
    key = model_state_key(model)
    model.load_state_dict(model.state_dict())  # same values, copied in place: treated as a new state
    assert model_state_key(model) != key
    key = model_state_key(model)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    torch.optim.SGD(model.parameters(), lr=0.0).step()  # lr 0: values unchanged, but the weights were written
    assert model_state_key(model) != key


def test_add_world_encodes_once_per_model_state(tiny_bert_dir, tiny_el):
    _, entities, _ = tiny_el
    model = make_model(tiny_bert_dir, "som")
    counter = CountingEncoder(model, "encode_entities")
    index = EntityIndex(model, encode_dtype="float32", show_progress=False)
    first = index.add_world("alpha", *entities.world_subset("alpha"))
    assert index.add_world("alpha", *entities.world_subset("alpha")) is first
    assert counter.rows == len(first)
    index.add_world("beta", *entities.world_subset("beta"))
    ids, ids_tensor, mask = entities.world_subset("alpha")
    index.add_world("alpha", ids, ids_tensor, mask * 0 + mask)  # equal inputs, new tensors: still reused
    assert counter.rows == len(first) + len(entities.rows_by_world["beta"])
    changed = ids_tensor.clone()
    changed[0, 1] += 1
    index.add_world("alpha", ids, changed, mask)  # different tokens: re-encoded
    assert counter.rows == 2 * len(first) + len(entities.rows_by_world["beta"])
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)  # a new model state: re-encoded, and stale worlds are dropped
    index.add_world("alpha", *entities.world_subset("alpha"))
    assert counter.rows == 3 * len(first) + len(entities.rows_by_world["beta"])
    assert list(index.worlds) == ["alpha"]


def test_retrieve_splits_encodes_each_world_once_and_equals_per_split_retrieval(tiny_bert_dir, tiny_el):
    _, entities, splits = tiny_el
    model = make_model(tiny_bert_dir, "som")
    index = EntityIndex(model, encode_dtype="float32", show_progress=False)
    separate = {name: retrieve(index, splits[name], entities, k=5) for name in ("train", "val")}
    counter = CountingEncoder(model, "encode_entities")
    together = retrieve_splits(
        index, {"train": splits["train"], "val": splits["val"], "val_again": splits["val"]}, entities, k=5
    )
    assert counter.rows == len(entities)  # every world once, although val's world serves two splits
    assert not index.worlds  # freed (keep=False)
    for name, ranking in separate.items():
        assert torch.equal(together[name].rows, ranking.rows)
        torch.testing.assert_close(together[name].scores, ranking.scores)
    assert torch.equal(together["val_again"].rows, separate["val"].rows)


def test_evaluation_keeps_its_encodings_for_the_same_step_until_a_training_step(
    tmp_path, tiny_bert_dir, tiny_el
):
    _, entities, splits = tiny_el
    model = make_model(tiny_bert_dir, "som").train()
    trainer = NCETrainer(model, tiny_args(tmp_path), splits["train"], entities, eval_mentions=splits["train"])
    counter = CountingEncoder(model, "encode_entities")
    trainer.evaluate()  # encodes the training worlds and keeps them
    encoded = counter.rows
    assert encoded == sum(len(entities.rows_by_world[w]) for w in ("alpha", "beta"))
    # what mining at the same step asks for: served from the evaluation's encoding
    kept = trainer.index.encoded_world("alpha", *entities.world_subset("alpha"))
    assert kept is not None and kept is trainer.index.add_world("alpha", *entities.world_subset("alpha"))
    trainer.evaluate()
    assert counter.rows == encoded
    release = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ReleaseEncodingsCallback))
    release.on_step_end(trainer.args, trainer.state, trainer.control)  # a training step: encodings freed
    assert not trainer.index.worlds
