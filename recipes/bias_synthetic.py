"""Section 6.4 / Figure 1: gradient bias of hard vs random NCE on a synthetic low-entropy population.

Population: ``num_inputs`` inputs x with fixed Gaussian features in R^input_dim, pop(x) uniform, and
pop(y|x) = softmax(u_x / temperature) over ``num_labels`` labels with u_x ~ U(0, 1)^Y (temperature 0.001:
a peaky, low-entropy conditional). Model: one-hidden-layer ReLU network features -> scores [X, Y], trained by
Adam on the empirical cross-entropy of ``batch_size`` iid (x, y) ~ pop per update.

Every ``eval_every`` updates (and at the last one) we compute J_CE (eq. 2) exactly over pop, and for each
negative strategy the Monte-Carlo J_NCE (eq. 5) with ``num_negatives`` negatives (K - 1 = 4) averaged over
``num_simulations`` draws, plus ||grad J_CE - grad J_NCE|| (Section 3.1). The expectation over y1 ~ pop(.|x)
is enumerated exactly over the labels holding all but ``support_tol`` of each pop(.|x) (``population_rows``),
so only the negatives are Monte Carlo. "hard" = model distribution without replacement, gold excluded
(Section 6.3); "random" = uniform without replacement, gold excluded.

    python recipes/bias_synthetic.py --config recipes/configs/bias_synthetic.yaml --num_updates 500
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from hf_models.analysis.bias import cross_entropy, gradient_bias, population_rows  # noqa: E402
from hf_models.recipes.config_parsing import parse_config  # noqa: E402

logger = logging.getLogger("bias_synthetic")
DEFAULT_CONFIG = REPO_ROOT / "recipes" / "configs" / "bias_synthetic.yaml"


@dataclass
class BiasSyntheticArguments:
    output_dir: str = field(default="outputs/bias_synthetic", metadata={"help": "PNG, JSON and CSV go here."})
    seed: int = field(default=0, metadata={"help": "Seeds population, model init, batches and negatives."})
    num_inputs: int = field(default=100, metadata={"help": "|X|: number of distinct inputs x."})
    input_dim: int = field(default=32, metadata={"help": "Dimension of the fixed Gaussian input features."})
    hidden_dim: int = field(default=256, metadata={"help": "Width of the single ReLU layer."})
    num_labels: int = field(default=1000, metadata={"help": "|Y| (paper: 1000)."})
    temperature: float = field(
        default=0.001, metadata={"help": "pop(y|x) = softmax(u / temperature), u ~ U(0,1)."}
    )
    batch_size: int = field(
        default=128, metadata={"help": "iid samples (x, y) ~ pop per update (paper: 128)."}
    )
    num_updates: int = field(default=1000, metadata={"help": "Training updates."})
    learning_rate: float = field(default=0.01, metadata={"help": "Adam learning rate."})
    num_negatives: int = field(
        default=4, metadata={"help": "K - 1 negatives per NCE candidate set (paper: 4)."}
    )
    num_simulations: int = field(default=10, metadata={"help": "Monte-Carlo negative draws (paper: 10)."})
    strategies: list[str] = field(default_factory=lambda: ["hard", "random"], metadata={"help": "Samplers."})
    hard_fraction: float = field(default=0.5, metadata={"help": "p of a 'mixed' strategy."})
    eval_every: int = field(default=10, metadata={"help": "Measure losses and bias every this many updates."})
    support_tol: float = field(default=1e-6, metadata={"help": "pop(.|x) mass dropped when enumerating y1."})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads."})


class OneLayerReLU(nn.Module):
    """s_theta(x, .) = W2 relu(W1 x + b1) + b2: the feed-forward network of Section 6.4."""

    def __init__(self, input_dim: int, hidden_dim: int, num_labels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_labels)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [X, D] -> [X, Y]
        return self.net(features)


def make_population(
    args: BiasSyntheticArguments, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input features [X, D] and pop(y|x) [X, Y] = softmax(u / temperature), u ~ U(0, 1)."""
    features = torch.randn(args.num_inputs, args.input_dim, generator=generator)
    u = torch.rand(args.num_inputs, args.num_labels, generator=generator, dtype=torch.float64)
    return features, (u / args.temperature).softmax(-1).float()


def sample_batch(
    pop: torch.Tensor, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size iid (x, y) ~ pop with pop(x) uniform: x [B], y [B]."""
    x = torch.randint(0, pop.shape[0], (batch_size,), generator=generator)
    y = torch.multinomial(pop[x], 1, generator=generator).squeeze(1)
    return x, y


def measure(
    model: OneLayerReLU,
    features: torch.Tensor,
    pop: torch.Tensor,
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    args: BiasSyntheticArguments,
    generator: torch.Generator,
) -> dict[str, float]:
    """Exact J_CE (eq. 2), per-strategy Monte-Carlo J_NCE (eq. 5) and ||b(theta)|| (Section 3.1)."""
    row_input, gold, weights = rows
    params = list(model.parameters())
    with torch.no_grad():
        record = {"ce": cross_entropy(model(features), pop).item()}
    for strategy in args.strategies:
        estimate = gradient_bias(
            lambda: model(features)[row_input],  # [R, Y]
            params,
            gold,
            strategy,
            args.num_negatives,
            args.num_simulations,
            generator,
            weights=weights,
            hard_fraction=args.hard_fraction,
        )
        record[f"nce_{strategy}"] = estimate.nce_loss
        record[f"bias_norm_{strategy}"] = estimate.bias_norm
        record["ce_grad_norm"] = float(estimate.ce_grad.norm())
    return record


def train(args: BiasSyntheticArguments) -> dict:
    """Run the experiment; returns {"config", "population", "history", "final"}."""
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    population_gen = torch.Generator().manual_seed(args.seed)
    batch_gen = torch.Generator().manual_seed(args.seed + 1)
    negative_gen = torch.Generator().manual_seed(args.seed + 2)
    features, pop = make_population(args, population_gen)
    entropy = -(pop * pop.clamp_min(1e-30).log()).sum(1).mean().item()
    rows = population_rows(pop, support_tol=args.support_tol)
    logger.info(
        "population: %d inputs x %d labels, mean entropy %.3f nats (uniform: %.3f); %d (x, y1) rows kept",
        args.num_inputs, args.num_labels, entropy, math.log(args.num_labels), rows[0].numel(),
    )  # fmt: skip
    model = OneLayerReLU(args.input_dim, args.hidden_dim, args.num_labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    history = []
    for update in tqdm(range(args.num_updates + 1), desc="updates"):
        if update % args.eval_every == 0 or update == args.num_updates:
            record = {"update": update, **measure(model, features, pop, rows, args, negative_gen)}
            record["kl"] = record["ce"] - entropy
            history.append(record)
            logger.debug("%s", record)
        if update == args.num_updates:
            break
        x, y = sample_batch(pop, args.batch_size, batch_gen)
        loss = cross_entropy(model(features[x]), y)  # empirical eq. (2) on the batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    population = {"mean_entropy": entropy, "num_rows": int(rows[0].numel())}
    return {"config": asdict(args), "population": population, "history": history, "final": history[-1]}


def write_outputs(result: dict, output_dir: Path) -> dict[str, Path]:
    """metrics.json, metrics.csv and bias_synthetic.png (two panels, Figure 1) into output_dir."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: output_dir / name for name in ("metrics.json", "metrics.csv", "bias_synthetic.png")}
    paths["metrics.json"].write_text(json.dumps(result, indent=2))
    history = result["history"]
    with paths["metrics.csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot(history, result["config"]["strategies"], paths["bias_synthetic.png"])
    return paths


def plot(history: list[dict], strategies: list[str], path: Path) -> None:
    """Left: CE and NCE losses over updates; right: ||grad J_CE - grad J_NCE|| per strategy (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    updates = [r["update"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(updates, [r["ce"] for r in history], label="cross entropy", color="black")
    for strategy in strategies:
        left.plot(updates, [r[f"nce_{strategy}"] for r in history], label=f"{strategy} NCE")
        right.plot(updates, [r[f"bias_norm_{strategy}"] for r in history], label=f"{strategy} NCE")
    left.set(xlabel="update", ylabel="loss", title="Loss")
    right.set(xlabel="update", ylabel="||grad J_CE - grad J_NCE||", title="Gradient bias", yscale="log")
    for axis in (left, right):
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (args,) = parse_config([BiasSyntheticArguments], argv, default_config=str(DEFAULT_CONFIG))
    start = time.time()
    result = train(args)
    paths = write_outputs(result, Path(args.output_dir))
    final = result["final"]
    print(
        f"finished {args.num_updates} updates in {time.time() - start:.1f}s; outputs: {paths['bias_synthetic.png']}"
    )
    print(json.dumps(final, indent=2))
    return result


if __name__ == "__main__":
    main()
