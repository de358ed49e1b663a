"""Train a dual retriever for YOUR knowledge base with the configuration that beat the practitioner's baseline on quality.

    accelerate launch recipes/kb_dual.py --dataset_dir data/my_kb [--config recipes/configs/kb_dual.yaml] [--flag value ...]

Not the paper's settings (those are in the zeshel_* recipes): hard negatives re-mined every epoch as in the paper,
but shared across the batch (in-batch negatives too), mean pooling, one shared encoder and a cosine score -- the
configuration that beat sentence-transformers' MNRL recipe on accuracy and recall@8 in
benchmarks/vs_sentence_transformers.py (not yet on wall time: README, "The practitioner's baseline").
"""

from hf_models.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
