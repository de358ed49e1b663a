"""Train and evaluate the dual encoder E1(x)^T F1(y).

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_dual.py [--config recipes/configs/zeshel_dual.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
