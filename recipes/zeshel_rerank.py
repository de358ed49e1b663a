"""Train and evaluate the joint cross-encoder reranker w^T E1([CLS] x [SEP] y) + b on a fixed retriever's top-64.

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_rerank.py [--config recipes/configs/zeshel_rerank.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__, kind="reranker")

if __name__ == "__main__":
    main()
