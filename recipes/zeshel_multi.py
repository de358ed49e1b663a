"""Train and evaluate the multi-m encoder max_t E1(x)^T F_t(y).

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_multi.py [--config recipes/configs/zeshel_multi.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
