"""Train and evaluate the multi-m retriever on KILT AIDA-CoNLL (Section 6.8).

    accelerate launch --config_file accelerate_config.yaml recipes/aida_multi.py [--config recipes/configs/aida_multi.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from pathlib import Path

from hf_models.recipe import run_retriever_recipe

CONFIG = str(Path(__file__).parent / "configs" / "aida_multi.yaml")


def main(argv: list[str] | None = None) -> dict:
    return run_retriever_recipe(argv, default_config=CONFIG)


if __name__ == "__main__":
    main()
