"""Train and evaluate the poly-m encoder F1(y)^T C_m(x, y).

    accelerate launch --config_file accelerate_config.yaml recipes/zeshel_poly.py [--config recipes/configs/zeshel_poly.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
