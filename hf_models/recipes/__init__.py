"""The recipe room: the plumbing every script under ``recipes/`` shares.

``recipe`` (what every retriever / reranker recipe does: parse, build, train, evaluate, save, push),
``recipe_args`` (its model and data arguments), ``config_parsing`` (YAML + command-line flags through
transformers' ``HfArgumentParser``), ``model_setup`` (the model a recipe builds) and ``detector_training``
(the mention-detector recipe).

The top room: it may import every other room; nothing in ``hf_models`` imports it.
"""
