"""How gradients flow through a network while it trains.

``flow = GradientFlow(model)``; after every ``optimizer.step()`` call ``flow.step()``. Per
parameter and step it records the gradient norm, mean |g|, max |g|, the fraction of exact zeros,
the fraction of units (rows of a weight matrix) whose whole gradient is zero (dead ReLUs), and
the update-to-weight ratio ||dW|| / ||W||. ``flow.warnings()`` names vanishing, exploding and
dead layers; ``flow.save(out_dir)`` writes ``gradient-flow.json`` and two plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VANISHING_RATIO = 1e-3  # first layer's gradient norm / last layer's, below which we warn
VANISHING_ABSOLUTE = 1e-7
EXPLODING = 1e3
DEAD_UNITS = 0.9  # fraction of a layer's units with an all-zero gradient
GROWTH = 1e2  # late gradient norms / early ones, above which the gradient is called exploding


class GradientFlow:
    """Records gradient statistics of ``model.named_parameters()`` at every `step`."""

    def __init__(self, model):
        self.params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("GradientFlow: the model has no parameters that require grad")
        self.history = {name: [] for name, _ in self.params}
        self._before = {name: p.data.copy() for name, p in self.params}

    def step(self) -> None:
        """Read the gradients of the step just taken and the update it made."""
        for name, p in self.params:
            weight = p.data
            update_norm = float(np.linalg.norm(weight - self._before[name]))
            self._before[name] = weight.copy()
            if p.grad is None:
                continue
            g = p.grad.data
            absg = np.abs(g)
            rows = absg.reshape(absg.shape[0], -1).max(axis=1) if g.ndim >= 2 else absg
            self.history[name].append({
                "grad_norm": float(np.linalg.norm(g)),
                "mean_abs_grad": float(absg.mean()),
                "max_abs_grad": float(absg.max()),
                "zero_fraction": float((g == 0).mean()),
                "dead_unit_fraction": float((rows == 0).mean()) if g.ndim >= 2 else 0.0,
                "update_ratio": update_norm / (float(np.linalg.norm(weight)) + 1e-12),
            })

    @property
    def steps(self) -> int:
        return max((len(h) for h in self.history.values()), default=0)

    def _weights(self):
        """Names of the weight matrices (the layers), first to last."""
        return [name for name, p in self.params if p.ndim >= 2 and self.history[name]]

    def summary(self, last: int = 10) -> dict:
        """Per parameter: each statistic averaged over the last ``last`` steps."""
        out = {}
        for name, records in self.history.items():
            recent = records[-last:]
            if recent:
                out[name] = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}
        return out

    def warnings(self) -> list[str]:
        """Plain-language warnings about vanishing, exploding and dead layers."""
        found = []
        summary = self.summary()
        layers = self._weights()
        for name in layers:
            s = summary[name]
            if s["dead_unit_fraction"] >= DEAD_UNITS:
                found.append(f"dead layer: {name}: {s['dead_unit_fraction']:.0%} of its units get "
                             f"no gradient at all (dead ReLUs?)")
            elif s["grad_norm"] < VANISHING_ABSOLUTE:
                found.append(f"vanishing gradient: {name} has gradient norm {s['grad_norm']:.2e}")
            if s["grad_norm"] > EXPLODING or not np.isfinite(s["grad_norm"]):
                found.append(f"exploding gradient: {name} has gradient norm {s['grad_norm']:.2e}")
            elif (growth := _growth(self.history[name])) is not None:
                found.append(f"exploding gradient: {name}'s gradient norm grew {growth:.0f}x "
                             f"over {len(self.history[name])} steps")
        if len(layers) >= 2:
            first, last = summary[layers[0]]["grad_norm"], summary[layers[-1]]["grad_norm"]
            if last > 0 and first / last < VANISHING_RATIO:
                found.append(f"vanishing gradient: the first layer ({layers[0]}) gets "
                             f"{first / last:.1e} of the gradient norm of the last "
                             f"({layers[-1]})")
        return found

    def to_dict(self) -> dict:
        """Everything recorded, as saved in gradient-flow.json."""
        return {"steps": self.steps, "history": self.history, "summary": self.summary(),
                "warnings": self.warnings()}

    def plot(self, out_dir) -> list[Path]:
        """Write gradient-norms.png (per layer over training) and gradient-bars.png (last step)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        layers = self._weights() or [n for n in self.history if self.history[n]]
        fig, ax = plt.subplots(figsize=(7, 4))
        for name in layers:
            norms = [max(r["grad_norm"], 1e-30) for r in self.history[name]]
            ax.plot(range(1, len(norms) + 1), norms, label=name)
        ax.set(yscale="log", xlabel="step", ylabel="gradient norm",
               title="gradient norm per layer")
        ax.legend(fontsize=7)
        fig.tight_layout()
        norms_path = out_dir / "gradient-norms.png"
        fig.savefig(norms_path, dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(7, 4))
        last = [max(self.history[n][-1]["grad_norm"], 1e-30) for n in layers]
        ax.bar(range(len(layers)), last)
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
        ax.set(yscale="log", ylabel="gradient norm", title=f"gradient norm at step {self.steps}")
        fig.tight_layout()
        bars_path = out_dir / "gradient-bars.png"
        fig.savefig(bars_path, dpi=110)
        plt.close(fig)
        return [norms_path, bars_path]

    def save(self, out_dir) -> Path:
        """Write gradient-flow.json and the two plots into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "gradient-flow.json"
        path.write_text(json.dumps(self.to_dict(), indent=1))
        self.plot(out_dir)
        return path


def _growth(records) -> float | None:
    """How many times the gradient norm grew from the first quarter of training to the last,
    when that is more than `GROWTH` (at least 4 steps), else None."""
    norms = [r["grad_norm"] for r in records]
    if len(norms) < 4:
        return None
    k = max(1, len(norms) // 4)
    early, late = float(np.mean(norms[:k])), float(np.mean(norms[-k:]))
    if early > 0 and np.isfinite(late) and late / early > GROWTH:
        return late / early
    return None
