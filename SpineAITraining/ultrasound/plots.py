"""Pictures for the ultrasound classifier's evaluation (matplotlib, Agg backend).

* ``confusion_matrices``: one 2 x 2 matrix per label, counts and row shares.
* ``roc_curves``: one ROC curve per label with its AUC and the chosen operating point.
* the timeline is SpineAILib.workflows.ultrasound.pictures.plot_timeline (the workflow draws it for
  every run; the trainer draws it from there for its report).
"""

import numpy as np

from SpineAITraining.common.metrics import roc_auc, roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def confusion_matrices(table, path, title=""):
    """2 x 2 matrices (rows: truth, columns: call) per label of an ``evaluate`` table."""
    plt = _pyplot()
    labels = table["labels"]
    fig, axes = plt.subplots(1, len(labels), figsize=(3.6 * len(labels), 3.4))
    for ax, label in zip(np.atleast_1d(axes), labels):
        e = table["per_label"][label]
        m = np.array([[e["tn"], e["fp"]], [e["fn"], e["tp"]]], dtype=float)
        shares = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (r, c), count in np.ndenumerate(m):
            ax.text(c, r, f"{int(count)}\n{shares[r, c]:.1%}", ha="center", va="center",
                    color="white" if shares[r, c] > 0.5 else "black", fontsize=10)
        ax.set_xticks([0, 1], ["absent", "present"])
        ax.set_yticks([0, 1], ["absent", "present"])
        ax.set_xlabel("model")
        ax.set_ylabel("truth")
        ax.set_title(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_curves(y_true, y_prob, labels, path, thresholds=None, title=""):
    """ROC curve per label; the operating point of ``thresholds`` marked."""
    plt = _pyplot()
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    fig, ax = plt.subplots(figsize=(5, 5))
    for j, label in enumerate(labels):
        auc = roc_auc(y_true[:, j], y_prob[:, j])
        if auc is None:
            continue
        fpr, tpr, _ = roc_curve(y_true[:, j], y_prob[:, j])
        line, = ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
        if thresholds and label in thresholds:
            t = thresholds[label]
            called = y_prob[:, j] >= t
            truth = y_true[:, j].astype(bool)
            ax.plot([np.mean(called[~truth]) if (~truth).any() else 0], [np.mean(called[truth]) if truth.any() else 0],
                    "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    else:  # a tiny split where no label has both classes: say so instead of an empty legend
        ax.text(0.5, 0.5, "no label has both classes here: no ROC curve", ha="center", va="center", fontsize=9)
    ax.set_title(title or "ROC curves (dots: chosen thresholds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(history, path):
    """Loss and validation F1 per epoch."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax.set_xlabel("epoch")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["val_f1_micro"] for h in history], "g--", label="validation F1 (micro)")
    ax2.set_ylim(0, 1.01)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
