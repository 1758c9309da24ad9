import numpy as np
import pytest
from matplotlib.image import AxesImage

from facellm.metrics.classification import confusion_matrix
from facellm.metrics.lr import ece_curve
from facellm.plots import (
    new_figure,
    plot_confusion,
    plot_det,
    plot_ece,
    plot_loss_curve,
    plot_roc,
    plot_tippett,
    save_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def llrs_labels():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(60, int), np.zeros(80, int)]
    llrs = rng.normal(0.0, 1.0, 140) + 1.2 * (2 * labels - 1)
    llrs[:2] = [np.inf, -np.inf]  # drawn at the axis edges
    return llrs, labels


def saved_png(fig, path) -> bytes:
    out = save_figure(fig, path)
    assert out == path and path.is_file()
    return path.read_bytes()


def test_tippett(tmp_path, llrs_labels):
    fig, ax = new_figure()
    plot_tippett(ax, *llrs_labels)
    assert len(ax.get_lines()) == 3  # H1, H2, LLR = 0
    h1 = ax.get_lines()[0]
    assert h1.get_label() == "H1 (same person), n=60"
    assert np.isfinite(h1.get_xdata()).all()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["H1 (same person), n=60", "H2 (different), n=80"]
    assert saved_png(fig, tmp_path / "nested" / "tippett.png").startswith(PNG_MAGIC)


def test_ece(tmp_path, llrs_labels):
    fig, ax = new_figure()
    data = ece_curve(*llrs_labels)
    plot_ece(ax, data)
    assert len(ax.get_lines()) == 3
    assert ax.get_lines()[1].get_ydata() == pytest.approx(data.ece)
    assert saved_png(fig, tmp_path / "ece.png").startswith(PNG_MAGIC)


def test_roc_one_and_several_systems(tmp_path, llrs_labels):
    llrs, labels = llrs_labels
    fig, axes = new_figure(1, 2)
    plot_roc(axes[0], labels, llrs)
    assert len(axes[0].get_lines()) == 2  # the curve and the chance diagonal
    plot_roc(axes[1], labels, {"explanation LR": llrs, "FR score": llrs + 1.0}, log_fmr=True)
    assert len(axes[1].get_lines()) == 2
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["explanation LR", "FR score"]
    assert axes[1].get_xscale() == "log"
    assert saved_png(fig, tmp_path / "roc.png").startswith(PNG_MAGIC)


def test_det(tmp_path, llrs_labels):
    llrs, labels = llrs_labels
    fig, ax = new_figure()
    plot_det(ax, labels, {"a": llrs, "b": -llrs})
    assert len(ax.get_lines()) == 2
    assert all(np.isfinite(line.get_xydata()).all() for line in ax.get_lines())
    assert saved_png(fig, tmp_path / "det.pdf").startswith(b"%PDF")


def test_confusion(tmp_path):
    classes = ["neutral", "happy", "sad"]
    matrix = confusion_matrix(["happy", "sad", "sad"], ["happy", None, "sad"], classes, unparsed_column=True)
    fig, ax = new_figure()
    plot_confusion(ax, matrix, classes)
    assert len([a for a in ax.get_children() if isinstance(a, AxesImage)]) == 1
    assert len(ax.texts) == 3 * 4
    assert [t.get_text() for t in ax.get_xticklabels()] == classes + ["(unparsed)"]
    assert saved_png(fig, tmp_path / "confusion.png").startswith(PNG_MAGIC)
    fig, ax = new_figure()
    plot_confusion(ax, matrix[:, :3], classes, normalize=True)
    assert sorted(t.get_text() for t in ax.texts).count("1.00") == 2  # the happy and sad rows are all correct
    with pytest.raises(ValueError, match="does not fit"):
        plot_confusion(ax, matrix, classes[:2])


def test_loss_curve(tmp_path):
    fig, ax = new_figure()
    plot_loss_curve(ax, [0, 10, 20], [2.0, 1.5, 1.2])
    plot_loss_curve(ax, [0, 20], [2.1, 1.4], label="eval")
    assert len(ax.get_lines()) == 2
    assert ax.get_lines()[1].get_ydata() == pytest.approx([2.1, 1.4])
    assert saved_png(fig, tmp_path / "loss.png").startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        plot_loss_curve(ax, [0, 1], [1.0])
