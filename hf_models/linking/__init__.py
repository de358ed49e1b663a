"""The linking room: text in, linked entities out (:class:`EntityLinker`). See docs/linking.md.

Input parsing (:mod:`.inputs`), mention detection (:mod:`.detection`), linking (:mod:`.linker`), reranking
(:mod:`.reranking`), alias candidates with a log prior (:mod:`.alias_candidates`), loading saved models
(:mod:`.loading`), index fingerprints (:mod:`.fingerprints`), results (:mod:`.results`) and the command line
(:mod:`.cli`, run as ``python -m hf_models.linking``).

May import :mod:`hf_models.modeling`, :mod:`hf_models.index`, ``data_scripts.featurize``,
``data_scripts.aliases`` and the shared helpers; never training, publishing, analysis or recipes.
"""

from .detection import DEFAULT_STOP_WORDS, DictionaryDetector, TrainedDetector, tokenize_windows
from .fingerprints import IndexMismatchError, check_fingerprints, model_fingerprint, tokenizer_fingerprint
from .inputs import DEFAULT_WORLD, TextInput, load_entity_table, parse_input, parse_marked
from .linker import EntityLinker
from .loading import load_model
from .results import LinkedEntity, LinkResult, MentionLink, candidate_probabilities, short_description

__all__ = [
    "DEFAULT_STOP_WORDS",
    "DEFAULT_WORLD",
    "DictionaryDetector",
    "EntityLinker",
    "IndexMismatchError",
    "LinkResult",
    "LinkedEntity",
    "MentionLink",
    "TextInput",
    "TrainedDetector",
    "candidate_probabilities",
    "check_fingerprints",
    "load_entity_table",
    "load_model",
    "model_fingerprint",
    "parse_input",
    "parse_marked",
    "short_description",
    "tokenize_windows",
    "tokenizer_fingerprint",
]
