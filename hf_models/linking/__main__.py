"""``python -m hf_models.linking``: the linking command line (:mod:`hf_models.linking.cli`)."""

from .cli import main

raise SystemExit(main())
