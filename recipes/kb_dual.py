"""Train a dual retriever for YOUR knowledge base with the configuration that beat the practitioner's baseline.

    accelerate launch recipes/kb_dual.py --dataset_dir data/my_kb [--config recipes/configs/kb_dual.yaml] [--flag value ...]

Your own knowledge base: JSON lines files of entities, mentions (per split) and optionally an alias table become
``data/my_kb`` with one command (docs/own_kb.md)::

    python -m data_scripts.jsonl --entities entities.jsonl.gz --mentions train=train.jsonl \
        --mentions val=dev.jsonl --aliases aliases.jsonl.gz --output_dir data/my_kb

Not the paper's settings (those are in the zeshel_* recipes), decided on real data (wsd_dev, docs/results.md): the
mention side averages the mention's own tokens (``reduction: span``), one shared encoder, cosine x 20, hard
negatives re-mined with the current model at every epoch as in the paper but only from the labeled entities of each
mention's world (``negative_pool: labeled``) and shared across the batch of 32 (in-batch negatives too), K = 2,
lr 5e-5. On wsd_dev's real dev mentions it beats sentence-transformers' MNRL recipe on recall@64 and world accuracy
(docs/results.md, "Real data (wsd_dev)").
"""

from hf_models.recipes.recipe import recipe_main

main = recipe_main(__file__)

if __name__ == "__main__":
    main()
