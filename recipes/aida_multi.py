"""Train and evaluate the multi-m retriever on KILT AIDA-CoNLL (Section 6.8).

    accelerate launch --config_file accelerate_config.yaml recipes/aida_multi.py [--config recipes/configs/aida_multi.yaml] [--flag value ...]

The YAML holds the paper's settings; every command-line flag overrides it.
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
