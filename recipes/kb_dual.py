"""Train a dual retriever for YOUR knowledge base with the configuration that beats the practitioner's baseline.

    accelerate launch recipes/kb_dual.py --dataset_dir data/my_kb [--config recipes/configs/kb_dual.yaml] [--flag value ...]

Not the paper's settings (those are in the zeshel_* recipes): hard negatives re-mined every epoch as in the paper,
but shared across the batch (in-batch negatives too), mean pooling, one shared encoder and a cosine score -- the
configuration that won benchmarks/vs_sentence_transformers.py (README, "The practitioner's baseline").
"""

from hf_models.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
