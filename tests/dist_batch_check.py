"""Run by tests/test_batch_semantics.py under `accelerate launch --num_processes N`.

Runs the zeshel_som recipe (its YAML: the paper's total batch of 4 mentions) for ONE optimizer step on a tiny
dataset and model, counting the mentions each process computes the loss on; every process writes its count.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_models.recipes.recipe import run_retriever_recipe  # noqa: E402
from hf_models.training.trainer import NCETrainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--out", required=True)
    cli = parser.parse_args()

    seen = []  # mentions of every micro-batch the loss is computed on (the dataloader may prefetch more)
    original = NCETrainer.compute_loss

    def counting_loss(self, model, inputs, *args, **kwargs):
        seen.append(int(inputs["mention_input_ids"].shape[0]))
        return original(self, model, inputs, *args, **kwargs)

    NCETrainer.compute_loss = counting_loss
    repo = Path(__file__).resolve().parents[1]
    run_retriever_recipe(
        ["--config", str(repo / "recipes/configs/zeshel_som.yaml"), "--encoder", cli.model_dir,
         "--dataset_dir", cli.dataset_dir, "--output_dir", str(Path(cli.out).parent / "run"),
         "--max_length", "24", "--num_candidates", "4", "--max_steps", "1", "--use_cpu", "true", "--bf16", "false",
         "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", "--eval_strategy", "no",
         "--load_best_model_at_end", "false", "--write_candidates", "false", "--max_eval_mentions", "4",
         "--mining_batch_size", "8", "--encode_dtype", "float32", "--log_level", "info"]
    )  # fmt: skip
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    Path(f"{cli.out}.{rank}").write_text(json.dumps({"mentions_in_step": sum(seen), "batches": seen}))


if __name__ == "__main__":
    main()
