"""The index room: entity tables as tensors, encoding them, searching them, evaluating the rankings.

``tables`` (the processed tables in memory, model inputs for mention x candidate rows), ``encoding``
(length-sorted batched encoding), ``entity_index`` (:class:`EntityIndex`: exact top-k, FAISS shortlists,
save / load), ``faiss_backend``, ``index_storage`` (the saved index folder), ``sharding`` (splitting work over
processes), ``evaluation`` (retrieve, rerank, candidate files, metrics) and ``alias_metrics`` (alias
candidates and priors: alias-restricted accuracy, the prior weight tuned on dev).

May import :mod:`hf_models.modeling`, ``data_scripts.aliases`` and the shared top-level helpers (``atomic``,
``progress``); never training, linking, publishing, analysis or recipes.
"""
