"""Train and evaluate the multi-m encoder max_t E1(x)^T F_t(y).

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_multi.py [--config recipes/configs/zeshel_multi.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from pathlib import Path

from hf_models.recipe import run_retriever_recipe

CONFIG = str(Path(__file__).parent / "configs" / "zeshel_multi.yaml")


def main(argv: list[str] | None = None) -> dict:
    return run_retriever_recipe(argv, default_config=CONFIG)


if __name__ == "__main__":
    main()
