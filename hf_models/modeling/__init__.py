"""The remote-code room: the configurations and models of every saved model folder.

Exactly the files that ``save_pretrained`` copies into a model folder (``configuration_*``, ``modeling_*`` and
what they import: ``scoring`` (eq. 9), ``all_pairs``, ``losses`` (eq. 10/11), ``input_format``, ``modeling_text``),
so ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` runs this code without the package installed.
The files keep their names (``auto_map`` in saved ``config.json`` files names them) and may import only each
other (relative imports), torch, transformers and the standard library; ``tests/test_layout.py`` checks this.
This ``__init__`` imports nothing: ``hf_models`` re-exports the public names.
"""
