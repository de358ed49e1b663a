"""PyLate's ColBERT recipe, run in its OWN virtual environment (PyLate pins sentence-transformers 5.3 and
transformers <= 5.3, this repo needs sentence-transformers 6 and transformers 5.24).

Called by ``benchmarks/vs_sentence_transformers.py --systems pylate --pylate_python VENV/bin/python``; it does not
import this repo. Input JSON: the training triplets (anchor, positive, negative texts), the settings, and the
evaluation queries with their candidate pools; output JSON: training seconds and each query's top-k pool indices
by ColBERT's MaxSim (PyLate's own encoders; the scoring is the plain MaxSim sum over query tokens).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch


def maxsim_topk(queries: list, documents: list, k: int) -> list[list[int]]:
    """Top-k document indices per query by sum_t max_t' q_t . d_t' (padding masked)."""
    width = max(len(d) for d in documents)
    dim = documents[0].shape[-1]
    docs = torch.zeros(len(documents), width, dim)
    mask = torch.zeros(len(documents), width, dtype=torch.bool)
    for i, d in enumerate(documents):
        docs[i, : len(d)] = torch.as_tensor(d)
        mask[i, : len(d)] = True
    out = []
    for q in queries:
        q = torch.as_tensor(q)  # [Tq, d]
        sim = torch.einsum("qh,eth->eqt", q, docs)  # [E, Tq, Td]
        sim = sim.masked_fill(~mask[:, None, :], float("-inf")).amax(dim=-1).sum(dim=-1)  # [E]
        out.append(sim.topk(min(k, len(documents))).indices.tolist())
    return out


def main() -> None:
    from datasets import Dataset
    from pylate import losses, models, utils
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    spec = json.loads(Path(sys.argv[1]).read_text())
    torch.manual_seed(spec["seed"])
    start = time.perf_counter()
    model = models.ColBERT(
        model_name_or_path=spec["encoder"],
        query_length=spec["max_length"],
        document_length=spec["max_length"],
        device="cpu",
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=spec["output_dir"],
        num_train_epochs=spec["epochs"],
        per_device_train_batch_size=spec["batch_size"],
        learning_rate=spec["learning_rate"],
        bf16=spec["bf16"],  # fp32 on CPUs without AMX, where bf16 is far slower (see benchmarks/README.md)
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=50,
        seed=spec["seed"],
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(spec["triplets"]),
        loss=losses.Contrastive(model=model),
        data_collator=utils.ColBERTCollator(model.tokenize),
    )
    trainer.train()
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rankings = {}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["bf16"]):
        for name, pool in spec["pools"].items():
            documents = model.encode(
                pool["documents"], is_query=False, batch_size=128, show_progress_bar=False
            )
            queries = model.encode(pool["queries"], is_query=True, batch_size=128, show_progress_bar=False)
            documents = [torch.as_tensor(d).float() for d in documents]
            queries = [torch.as_tensor(q).float() for q in queries]
            rankings[name] = maxsim_topk(queries, documents, spec["k"])
    result = {"train_s": train_seconds, "eval_s": time.perf_counter() - start, "rankings": rankings}
    Path(spec["result_file"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
