"""The publishing room: what leaves the machine with a trained model.

``model_card`` (the README.md card with ``model-index`` results), ``hub`` (pushing exactly a folder's inference
files) and ``st_export`` (a sentence-transformers model of a single-vector retriever).

May import :mod:`hf_models.modeling`, :mod:`hf_models.index`, :mod:`hf_models.linking` (``st_export`` loads a
saved retriever as the linker does) and the shared helpers; never training, analysis or recipes.
"""
