"""Train and evaluate the joint cross-encoder reranker w^T E1([CLS] x [SEP] y) + b on a fixed retriever's top-64.

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_rerank.py [--config recipes/configs/zeshel_rerank.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from pathlib import Path

from hf_models.recipe import run_reranker_recipe

CONFIG = str(Path(__file__).parent / "configs" / "zeshel_rerank.yaml")


def main(argv: list[str] | None = None) -> dict:
    return run_reranker_recipe(argv, default_config=CONFIG)


if __name__ == "__main__":
    main()
