"""End-to-end linking of raw text on the embedded dataset's test worlds: mention detection P/R/F1 (dictionary vs
trained detector), end-to-end linking P/R/F1 with each, and throughput (texts/s, mentions/s). Prints one table.

Documents are the full texts of the entries that cite the test mentions (data/glossary_el); their sampled
``{cross-references}`` (the processed test mentions, located in the entry text) are the gold spans and entities.
The knowledge base is the two test worlds' entities together (foldoc_organisations + jargon_file, one index).
Unless given, a demo-like retriever (recipes/configs/demo_som.yaml: MiniLM, hard negatives, K = 8; here a dual
encoder by default, since exhaustive sum-of-max scoring of every detected mention against 3,119 entities takes too
long on 2 CPU cores, with fewer mentions, epochs and wordpieces) and the mention detector
(recipes/configs/mention_detector.yaml, threshold tuned on the val split) are trained first.

    nice -n 19 python benchmarks/linking_e2e.py                          # ~15-25 minutes on 2 CPU cores
    python benchmarks/linking_e2e.py --retriever outputs/demo_som --detector outputs/mention_detector
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import machine_line  # noqa: E402
from data_scripts.io import load_processed  # noqa: E402
from hf_models.index.evaluation import end_to_end_linking_metrics, mention_detection_metrics  # noqa: E402
from hf_models.linking import EntityLinker, TrainedDetector  # noqa: E402
from hf_models.recipes.detector_training import run_mention_detector_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KB_WORLD = "test"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset_dir", default=str(REPO / "data" / "glossary_el"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--retriever", default=None, help="a trained retriever folder (default: train one)")
    parser.add_argument(
        "--detector", default=None, help="a trained mention detector folder (default: train one)"
    )
    parser.add_argument("--architecture", default="dual", help="retriever architecture (the demo's is som)")
    parser.add_argument("--train_mentions", type=int, default=200, help="retriever training mentions")
    parser.add_argument(
        "--negatives", default="hard", help="retriever negatives (random skips the per-epoch mining encoding)"
    )
    parser.add_argument("--eval_mentions", type=int, default=100, help="retriever / detector evaluation rows")
    parser.add_argument("--train_epochs", type=int, default=1, help="retriever epochs")
    parser.add_argument("--detector_train_mentions", type=int, default=1600)
    parser.add_argument("--max_length", type=int, default=32, help="retriever wordpieces per mention/entity")
    parser.add_argument("--detector_max_length", type=int, default=64, help="detector wordpieces per window")
    parser.add_argument("--max_documents", type=int, default=None)
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=32, help="texts per linking batch")
    parser.add_argument("--output_dir", default="outputs/bench_linking_e2e")
    return parser.parse_args()


def build_documents(dataset_dir: str, split: str, max_documents: int | None):
    """(texts, gold [(start, end, entity_id)] per text, KB rows): the citing entries' full texts and the split's
    mentions located in them; the KB is every entity of the split's worlds (one world)."""
    mentions, entities = load_processed(dataset_dir)
    rows = mentions[split]
    worlds = set(rows["world"])
    text_of = {e["entity_id"]: e["text"] for e in entities}
    gold: dict[str, set] = defaultdict(set)
    unplaced = 0
    for row in rows:
        document = row["mention_id"].rsplit(".", 1)[0]  # glossary ids: <citing entry id>.<reference number>
        text = text_of[document]
        left, right = row["left_context"], row["right_context"]
        needle = " ".join(part for part in (left, row["mention"], right) if part)
        position = text.find(needle)
        if position < 0 or text.find(needle, position + 1) >= 0:
            unplaced += 1
            continue
        start = position + (len(left) + 1 if left else 0)
        gold[document].add((start, start + len(row["mention"]), row["label_id"]))
    documents = sorted(gold)[:max_documents]
    kb = [{**e, "world": KB_WORLD} for e in entities if e["world"] in worlds]
    print(
        f"{len(documents)} documents, {sum(len(gold[d]) for d in documents)} gold mentions placed "
        f"({unplaced} not uniquely placed), KB {len(kb)} entities of {sorted(worlds)}"
    )
    return [text_of[d] for d in documents], [sorted(gold[d]) for d in documents], kb


def train_retriever(cli: argparse.Namespace) -> str:
    """A demo-like retriever: the packaged MiniLM, the NCE loss of eq. (11) over K = 8 candidates (gold + 7
    negatives of the mention's world drawn every epoch by the NegativeMiner: ``hard`` from the current model's
    scores, eq. 8; ``random`` uniformly), lr 5e-5, batch 8. Trained here with the recipe's
    own pieces but without its final retrieval over every split (minutes less on 2 shared cores)."""
    from transformers import AutoTokenizer, set_seed

    from hf_models.index.entity_index import EntityIndex
    from hf_models.index.tables import candidate_inputs
    from hf_models.recipes.model_setup import build_model
    from hf_models.recipes.recipe import load_recipe_data
    from hf_models.recipes.recipe_args import DataArguments, ModelArguments, resolve_encoder
    from hf_models.training.mining import NegativeMiner

    set_seed(42)
    output = Path(cli.output_dir) / "retriever"
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("embedded"))
    data_args = DataArguments(
        max_length=cli.max_length, max_train_mentions=cli.train_mentions, eval_split="", test_split=""
    )
    data = load_recipe_data(data_args, tokenizer)
    mentions, entities = data.splits["train"], data.entities
    model = build_model(ModelArguments(architecture=cli.architecture), tokenizer, cli.max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.0)
    generator = torch.Generator().manual_seed(42)
    for epoch in range(cli.train_epochs):
        index = EntityIndex(model, batch_size=64, show_progress=False)
        miner = NegativeMiner(
            index, mentions, entities, strategy=cli.negatives, num_negatives=7, pool="world"
        )
        negatives = miner.mine(epoch).ids  # [N, 7] global entity rows
        model.train()
        order = torch.randperm(len(mentions), generator=generator)
        for start in range(0, len(mentions), 8):
            batch = order[start : start + 8]
            rows = torch.cat([mentions.gold_rows[batch, None], negatives[batch]], dim=1)  # [B, K], gold first
            loss = model(**candidate_inputs(mentions, entities, batch, rows, cross=False)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"retriever epoch {epoch}: last batch loss {loss.item():.3f}")
    model.eval().save_pretrained(output)
    tokenizer.save_pretrained(output)
    return str(output)


def train_detector(cli: argparse.Namespace) -> str:
    output = Path(cli.output_dir) / "detector"
    argv = [
        "--max_train_mentions", str(cli.detector_train_mentions), "--max_length", str(cli.detector_max_length),
        "--max_eval_mentions", str(cli.eval_mentions),
        "--output_dir", str(output), "--disable_tqdm", "true", "--log_level", "warning",
    ]  # fmt: skip
    run_mention_detector_recipe(
        argv, default_config=str(REPO / "recipes" / "configs" / "mention_detector.yaml")
    )
    return str(output)


def run(linker: EntityLinker, texts, gold, top_k: int, detector=None, spans=None) -> dict:
    inputs = (
        texts
        if spans is None
        else [{"text": t, "spans": [[s, e] for s, e, _ in g]} for t, g in zip(texts, spans, strict=True)]
    )
    start = time.perf_counter()
    results = linker.link(inputs, top_k=top_k, detector=detector)
    seconds = time.perf_counter() - start
    predicted_spans = [[(m.start, m.end) for m in r.mentions] for r in results]
    predicted_links = [[(m.start, m.end, m.entity_id) for m in r.mentions] for r in results]
    mentions = sum(len(p) for p in predicted_spans)
    return {
        "detection": mention_detection_metrics([[(s, e) for s, e, _ in g] for g in gold], predicted_spans),
        "linking": end_to_end_linking_metrics(gold, predicted_links),
        "seconds": seconds,
        "texts_per_s": len(texts) / seconds,
        "mentions_per_s": mentions / seconds,
        "mentions": mentions,
    }


def main() -> None:
    cli = parse_args()
    torch.manual_seed(0)
    texts, gold, kb = build_documents(cli.dataset_dir, cli.split, cli.max_documents)
    started = time.perf_counter()
    retriever = cli.retriever or train_retriever(cli)
    detector_dir = cli.detector or train_detector(cli)
    print(
        f"models ready in {time.perf_counter() - started:.0f} s: retriever {retriever}, detector {detector_dir}"
    )
    import datasets

    linker = EntityLinker.from_pretrained(
        retriever, batch_size=cli.batch_size, show_progress=False, device="cpu"
    )
    linker.build_index(datasets.Dataset.from_list(kb))
    trained = TrainedDetector.from_pretrained(detector_dir, device="cpu")
    rows = {
        "gold spans (linking only)": run(linker, texts, gold, cli.top_k, spans=gold),
        "dictionary (KB titles)": run(linker, texts, gold, cli.top_k, detector=linker.dictionary_detector()),
        f"trained (threshold {trained.threshold:g})": run(linker, texts, gold, cli.top_k, detector=trained),
    }
    Path(cli.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cli.output_dir) / "results.json").write_text(json.dumps(rows, indent=2))
    print(
        f"\n{cli.split} worlds of {cli.dataset_dir}: {len(texts)} documents, {sum(map(len, gold))} gold mentions, "
        f"KB {len(kb)} entities; retriever {retriever}; detector {detector_dir}; top-{cli.top_k}\n"
        f"{machine_line(torch.device('cpu'))}\n"
    )
    print(
        "| mentions from | det. P | det. R | det. F1 | link P | link R | link F1 | mentions | texts/s | mentions/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        d, link = r["detection"], r["linking"]
        print(
            f"| {name} | {d['precision']:.1f} | {d['recall']:.1f} | {d['f1']:.1f} | {link['precision']:.1f} | "
            f"{link['recall']:.1f} | {link['f1']:.1f} | {r['mentions']} | {r['texts_per_s']:.1f} | "
            f"{r['mentions_per_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
