"""Train and evaluate the sum-of-max encoder sum_t max_t' E_t(x)^T F_t'(y).

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_som.py [--config recipes/configs/zeshel_som.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from pathlib import Path

from hf_models.recipe import run_retriever_recipe

CONFIG = str(Path(__file__).parent / "configs" / "zeshel_som.yaml")


def main(argv: list[str] | None = None) -> dict:
    return run_retriever_recipe(argv, default_config=CONFIG)


if __name__ == "__main__":
    main()
