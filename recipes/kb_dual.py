"""Train a dual retriever for YOUR knowledge base with the configuration that beat the practitioner's baseline.

    accelerate launch recipes/kb_dual.py --dataset_dir data/my_kb [--config recipes/configs/kb_dual.yaml] [--flag value ...]

Your own knowledge base: JSON lines files of entities, mentions (per split) and optionally an alias table become
``data/my_kb`` with one command (docs/own_kb.md)::

    python -m data_scripts.jsonl --entities entities.jsonl.gz --mentions train=train.jsonl \
        --mentions val=dev.jsonl --aliases aliases.jsonl.gz --output_dir data/my_kb

Not the paper's settings (those are in the zeshel_* recipes): hard negatives re-mined with the current model at every
epoch as in the paper, but only from the labeled entities of each mention's world (``negative_pool: labeled``) and
shared across the batch (in-batch negatives too; each batch holds 32 mentions of one world), mean pooling,
cosine x 20, K = 2, two encoders with their word-embedding tables fixed, lr 1e-4. On the embedded data it beat sentence-transformers' MNRL recipe on
accuracy and recall@8 on both variants of benchmarks/vs_sentence_transformers.py, at the same or lower wall time
(README, "The practitioner's baseline").
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
