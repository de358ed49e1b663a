"""Data layer: loaders that turn Zeshel, KILT AIDA and dictd glossaries into the processed tables of
docs/design.md, the shared featurization, validation, and the Parquet layout (see :mod:`data_scripts.io`)."""
