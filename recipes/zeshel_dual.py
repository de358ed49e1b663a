"""Train and evaluate the dual encoder E1(x)^T F1(y).

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_dual.py [--config recipes/configs/zeshel_dual.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from pathlib import Path

from hf_models.recipe import run_retriever_recipe

CONFIG = str(Path(__file__).parent / "configs" / "zeshel_dual.yaml")


def main(argv: list[str] | None = None) -> dict:
    return run_retriever_recipe(argv, default_config=CONFIG)


if __name__ == "__main__":
    main()
