"""Train the ELQ-style mention detector (start/end/inside span scores) from the labeled spans of processed tables.

    python recipes/mention_detector.py [--config recipes/configs/mention_detector.yaml] [--flag value ...]

The result (config, weights, tokenizer) loads with ``AutoModel.from_pretrained`` and links raw text with
``python -m hf_models.linking --detector OUTPUT_DIR ...`` (docs/linking.md).
"""

from pathlib import Path

from hf_models.recipes.detector_training import run_mention_detector_recipe

DEFAULT_CONFIG = str(Path(__file__).parent / "configs" / "mention_detector.yaml")


def main(argv: list[str] | None = None) -> dict:
    return run_mention_detector_recipe(argv, DEFAULT_CONFIG)


if __name__ == "__main__":
    main()
