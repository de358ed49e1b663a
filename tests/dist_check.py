"""Run by tests/test_distributed.py under `accelerate launch --num_processes N --cpu`.

Mines the epoch-0 hard negatives and takes ONE optimizer step on a tiny model; process 0 writes the negatives and
the first-step loss (averaged over processes by the Trainer) to --out as JSON.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import make_tiny_tables  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from data_scripts.featurize import featurize_entities, featurize_mentions, prepare_tokenizer  # noqa: E402
from hf_models.index.tables import EntityTable, MentionTable  # noqa: E402
from hf_models.modeling.modeling_retriever import MODEL_BY_ARCHITECTURE  # noqa: E402
from hf_models.training.trainer import NCETrainer  # noqa: E402
from hf_models.training.training_args import NCETrainingArguments  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--global_batch", type=int, default=8)
    parser.add_argument("--architecture", default="som")
    cli = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(cli.model_dir)
    prepare_tokenizer(tokenizer)
    mentions, entities = make_tiny_tables({"alpha": "train", "beta": "train"}, mentions_per_world=12)
    entity_table = EntityTable.from_dataset(featurize_entities(entities, tokenizer, max_length=24))
    train = MentionTable.from_dataset(
        featurize_mentions(mentions["train"], tokenizer, max_length=24), entity_table
    )

    torch.manual_seed(0)
    model = MODEL_BY_ARCHITECTURE[cli.architecture].from_encoder(cli.model_dir)
    for module in model.modules():  # dropout off: the per-process dropout streams differ by design
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    args = NCETrainingArguments(
        output_dir=str(Path(cli.out).parent / "run"),
        negatives="hard",
        num_candidates=5,
        max_steps=1,
        per_device_train_batch_size=1,  # replaced below
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=11,
        mining_batch_size=4,
        mining_chunk_size=3,
        encode_dtype="float32",
        disable_tqdm=True,
    )
    args.per_device_train_batch_size = cli.global_batch // args.world_size
    trainer = NCETrainer(model, args, train, entity_table)
    trainer.train()
    if trainer.is_world_process_zero():
        loss = next(r["loss"] for r in trainer.state.log_history if "loss" in r)
        result = {
            "world_size": args.world_size,
            "negatives": trainer.store.current.ids.tolist(),
            "loss": loss,
        }
        Path(cli.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
