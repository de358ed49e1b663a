"""Train and evaluate the sum-of-max encoder sum_t max_t' E_t(x)^T F_t'(y).

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_som.py [--config recipes/configs/zeshel_som.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
