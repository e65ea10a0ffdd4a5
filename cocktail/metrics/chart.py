"""The bar chart of one model's evaluations: FID and KID per class and union, per reference kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import Evaluation


def bar_chart(evaluations: list[Evaluation], path: str | Path) -> Path:
    """FID and KID per class and union, one bar group per reference kind, with N in the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(evaluations)
    for axis, metric, label in ((axes[0], "fid", "FID"), (axes[1], "kid", "KID ×10³")):
        for i, evaluation in enumerate(evaluations):
            scopes = list(evaluation.scores)
            values = [getattr(evaluation.scores[s], metric) * (1e3 if metric == "kid" else 1) for s in scopes]
            positions = np.arange(len(scopes)) + i * width
            axis.bar(positions, values, width, label=f"vs {evaluation.reference}")
            axis.set_xticks(np.arange(len(scopes)) + (len(evaluations) - 1) * width / 2)
            axis.set_xticklabels([f"{s}\nN={evaluation.scores[s].num_model}" for s in scopes], fontsize=8)
        axis.set_title(f"{label} (lower is better)")
        axis.legend(fontsize=8)
    fig.suptitle(evaluations[0].model, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
