"""Plots for reports. Each takes the axes to draw on and the data, apart from the maths
(`facellm.metrics`), like lir's `calculate_ece` vs `plot_ece`:

    fig, ax = new_figure()
    plot_ece(ax, ece_curve(llrs, labels))
    save_figure(fig, "runs/x/ece.png")

Figures are plain `matplotlib.figure.Figure`s on the Agg canvas: no pyplot state, no GUI
backend, safe in threads and on servers, and the user's pyplot backend is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.stats import norm

from facellm.metrics.lr import EceCurve, tippett_data
from facellm.metrics.verification import det_curve, roc_curve

H1_COLOR = "tab:red"   # lir's colours: H1 red, H2 blue
H2_COLOR = "tab:blue"


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 4.0)) -> tuple[Figure, Axes]:
    """A figure on the Agg canvas and its axes (an array of axes when nrows * ncols > 1)."""
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=True)


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write the figure (format from the suffix, e.g. .png/.pdf/.svg), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _finite_positions(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """+-inf drawn at the axis edges."""
    return np.where(np.isposinf(values), high, np.where(np.isneginf(values), low, values))


def plot_tippett(ax: Axes, llrs: ArrayLike, labels: ArrayLike) -> None:
    """Tippett plot: for each hypothesis, the fraction of its LLRs >= x (+-inf at the edges)."""
    data = tippett_data(llrs, labels)
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=2)
    values = np.r_[data.llrs_h1, data.llrs_h2]
    finite = values[np.isfinite(values)]
    low, high = (finite.min() - 1, finite.max() + 1) if finite.size else (-1.0, 1.0)
    for x, p, color, name in ((data.llrs_h1, data.proportion_h1, H1_COLOR, f"H1 (same person), n={counts[1]}"),
                              (data.llrs_h2, data.proportion_h2, H2_COLOR, f"H2 (different), n={counts[0]}")):
        # proportion >= x is left-continuous: p[i] holds on (x[i-1], x[i]]
        ax.step(np.r_[low, _finite_positions(x, low, high), high], np.r_[1.0, p, 0.0] * 100, where="pre",
                color=color, label=name)
    ax.axvline(0.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlim(low, high)
    ax.set_ylim(0, 100)
    ax.set_xlabel("log$_{10}$(LR)")
    ax.set_ylabel("proportion of LLRs $\\geq$ x (%)")
    ax.legend()


def plot_ece(ax: Axes, data: EceCurve) -> None:
    """ECE plot: the LLRs (solid), after PAV (dashed), and LR = 1 (dotted), as in lir."""
    ax.plot(data.log_prior_odds, data.ece_reference, linestyle=":", color="gray", label="LR = 1 (reference)")
    ax.plot(data.log_prior_odds, data.ece, linestyle="-", color="tab:red", label="LRs")
    ax.plot(data.log_prior_odds, data.ece_pav, linestyle="--", color="tab:blue", label="PAV LRs")
    top = np.nanmax(np.r_[data.ece_reference, data.ece[np.isfinite(data.ece)]]) if len(data.ece) else 1.0
    ax.set_ylim(0, 1.05 * top)
    ax.set_xlim(data.log_prior_odds[0], data.log_prior_odds[-1])
    ax.set_xlabel("prior log$_{10}$(odds)")
    ax.set_ylabel("empirical cross-entropy (bits)")
    ax.grid(True, linestyle=":")
    ax.legend()


def _systems(scores: ArrayLike | Mapping[str, ArrayLike]) -> Mapping[str, ArrayLike]:
    return scores if isinstance(scores, Mapping) else {"": scores}


def plot_roc(ax: Axes, labels: ArrayLike, scores: ArrayLike | Mapping[str, ArrayLike], *,
             log_fmr: bool = False) -> None:
    """ROC (TMR against FMR) of one system, or several scored on the same pairs ({name: scores})."""
    for name, s in _systems(scores).items():
        roc = roc_curve(labels, s)
        ax.plot(roc.fmr, roc.tmr, label=name or None)
    if log_fmr:
        ax.set_xscale("log", nonpositive="mask")
    else:
        ax.plot([0, 1], [0, 1], linestyle=":", color="gray")
    ax.set_xlabel("false match rate")
    ax.set_ylabel("true match rate")
    ax.grid(True, linestyle=":")
    if isinstance(scores, Mapping):
        ax.legend(loc="lower right")


_DET_TICKS = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99])


def plot_det(ax: Axes, labels: ArrayLike, scores: ArrayLike | Mapping[str, ArrayLike]) -> None:
    """DET curve (FNMR against FMR on normal-deviate axes); points at rate 0 or 1 are not drawn."""
    lowest = 1.0
    for name, s in _systems(scores).items():
        det = det_curve(labels, s)
        fmr, fnmr = det.fmr, det.fnmr
        keep = (fmr > 0) & (fmr < 1) & (fnmr > 0) & (fnmr < 1)
        ax.plot(norm.ppf(fmr[keep]), norm.ppf(fnmr[keep]), label=name or None)
        if keep.any():
            lowest = min(lowest, fmr[keep].min(), fnmr[keep].min())
    ticks = _DET_TICKS[_DET_TICKS >= min(lowest, 0.01) / 2]
    positions = norm.ppf(ticks)
    names = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(positions, names)
    ax.set_yticks(positions, names)
    ax.set_xlim(positions[0], positions[-1])
    ax.set_ylim(positions[0], positions[-1])
    ax.set_xlabel("false match rate (%)")
    ax.set_ylabel("false non-match rate (%)")
    ax.grid(True, linestyle=":")
    if isinstance(scores, Mapping):
        ax.legend(loc="upper right")


def plot_confusion(ax: Axes, matrix: ArrayLike, classes: Sequence[str], *, normalize: bool = False) -> None:
    """Confusion matrix (rows true, columns predicted), with counts (or row fractions) in the cells.

    A matrix with one column more than `classes` (`confusion_matrix(..., unparsed_column=True)`)
    gets "(unparsed)" as its last column.
    """
    counts = np.asarray(matrix, dtype=float)
    if counts.shape[0] != len(classes) or counts.shape[1] not in (len(classes), len(classes) + 1):
        raise ValueError(f"matrix of shape {counts.shape} does not fit {len(classes)} classes")
    columns = [str(c) for c in classes] + ["(unparsed)"] * (counts.shape[1] - len(classes))
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        counts = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    threshold = counts.max() / 2 if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center",
                color="white" if value > threshold else "black", fontsize=8)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


def plot_loss_curve(ax: Axes, steps: ArrayLike, losses: ArrayLike, *, label: str = "train") -> None:
    """Loss against optimiser step; call again with label="eval" to overlay an evaluation loss."""
    steps, losses = np.asarray(steps), np.asarray(losses, dtype=float)
    if steps.shape != losses.shape:
        raise ValueError(f"{steps.shape[0]} steps but {losses.shape[0]} losses")
    ax.plot(steps, losses, marker="." if len(steps) < 50 else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, linestyle=":")
    ax.legend()
