"""Run by tests/test_streaming.py under `accelerate launch --num_processes N` (CPU, gloo).

Mines epoch-1 negatives from the training pool with a tiny som retriever for every strategy and two entity chunk
sizes; process 0 writes {strategy/chunk: ids} as JSON to --out.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from accelerate import Accelerator  # noqa: E402
from conftest import make_tiny_tables  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer  # noqa: E402
from hf_models.index.entity_index import EntityIndex  # noqa: E402
from hf_models.index.tables import EntityTable, MentionTable  # noqa: E402
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE  # noqa: E402
from hf_models.training.mining import STRATEGIES, NegativeMiner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--out", required=True)
    cli = parser.parse_args()
    accelerator = Accelerator(cpu=True)
    tokenizer = AutoTokenizer.from_pretrained(cli.model_dir)
    prepare_tokenizer(tokenizer)
    mentions, entities = make_tiny_tables(
        {"alpha": "train", "beta": "train", "gamma": "train"}, mentions_per_world=5
    )
    table = EntityTable.from_dataset(featurize_entities(entities, tokenizer, max_length=24))
    train = MentionTable.from_dataset(featurize_mentions(mentions["train"], tokenizer, max_length=24), table)
    torch.manual_seed(0)
    model = MODEL_BY_ARCHITECTURE["som"].from_encoder(cli.model_dir)
    result = {}
    for strategy in STRATEGIES:
        for entity_chunk in (5, 64):
            index = EntityIndex(
                model, accelerator, encode_dtype="float32", show_progress=False, chunk_size=entity_chunk
            )
            miner = NegativeMiner(
                index, train, table, strategy=strategy, num_negatives=7, seed=3, chunk_size=4, pool="training"
            )
            result[f"{strategy}/{entity_chunk}"] = miner.mine(1).ids.tolist()
    if accelerator.is_main_process:
        result["world_size"] = accelerator.num_processes
        Path(cli.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
