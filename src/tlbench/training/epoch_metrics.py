"""Per-epoch validation metrics that early stopping can monitor besides accuracy and
loss: balanced accuracy and macro-F1 (:class:`ConfusionMetric`, from a confusion matrix
accumulated over the epoch's batches) and, for two classes, ROC AUC
(:class:`PositiveClassAUC`). Written with ``keras.ops`` only: the same on every Keras
backend. They compute what :func:`tlbench.training.metrics.label_metrics` (scikit-learn)
computes for a split, so the epoch early stopping keeps is the one with the best
validation figure of the metric that chooses (``selection.metric`` of the study).
"""

from __future__ import annotations

from typing import Any

import keras

#: Monitors (``training.early_stopping.monitor``) that need a metric of this module,
#: with the metric's name in the fit's logs (without the ``val_`` prefix).
MONITORED = {
    "val_balanced_accuracy": "balanced_accuracy",
    "val_macro_f1": "macro_f1",
    "val_roc_auc": "roc_auc",
}


@keras.saving.register_keras_serializable(package="tlbench")
class ConfusionMetric(keras.metrics.Metric):
    """``balanced_accuracy`` (mean recall over the classes present in the labels) or
    ``macro_f1`` (mean F1 over the classes present in the labels or the predictions)
    of the argmax predictions, as scikit-learn defines them."""

    KINDS = ("balanced_accuracy", "macro_f1")

    def __init__(self, num_classes: int, kind: str, name: str | None = None, **kwargs: Any):
        if kind not in self.KINDS:
            raise ValueError(f"ConfusionMetric kind {kind!r}; valid: {', '.join(self.KINDS)}")
        super().__init__(name=name or kind, **kwargs)
        self.num_classes, self.kind = int(num_classes), kind
        self._direction = "up"  # early stopping's mode "auto" reads it
        self.matrix = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float32",
            name="confusion",
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops = keras.ops
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted = ops.argmax(y_pred, axis=-1)
        true_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        pred_hot = ops.one_hot(predicted, self.num_classes, dtype="float32")
        self.matrix.assign_add(ops.matmul(ops.transpose(true_hot), pred_hot))

    def result(self) -> Any:
        ops = keras.ops
        matrix = ops.convert_to_tensor(self.matrix)
        hits = ops.diagonal(matrix)
        true = ops.sum(matrix, axis=1)
        if self.kind == "balanced_accuracy":
            scores, counted = hits / ops.maximum(true, 1.0), true > 0
        else:
            both = true + ops.sum(matrix, axis=0)
            scores, counted = 2.0 * hits / ops.maximum(both, 1.0), both > 0
        counted = ops.cast(counted, "float32")
        return ops.sum(scores * counted) / ops.maximum(ops.sum(counted), 1.0)

    def reset_state(self) -> None:
        self.matrix.assign(keras.ops.zeros((self.num_classes, self.num_classes), "float32"))

    def get_config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "kind": self.kind, "name": self.name}


@keras.saving.register_keras_serializable(package="tlbench")
class PositiveClassAUC(keras.metrics.AUC):
    """ROC AUC of class index 1's probability against integer labels (two classes),
    Keras's thresholded estimate (``num_thresholds`` 1000) of scikit-learn's exact one."""

    def __init__(self, name: str = "roc_auc", num_thresholds: int = 1000, **kwargs: Any):
        super().__init__(name=name, num_thresholds=num_thresholds, **kwargs)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        ops = keras.ops
        labels = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        super().update_state(labels, y_pred[:, 1], sample_weight)


def monitored_metrics(monitor: str | None, num_classes: int) -> list[keras.metrics.Metric]:
    """The metrics a fit compiles so that ``monitor`` is in its logs (none for
    ``val_accuracy`` / ``val_loss``). ``val_roc_auc`` needs two classes."""
    kind = MONITORED.get(monitor or "")
    if kind is None:
        return []
    if kind == "roc_auc":
        if num_classes != 2:
            raise ValueError(
                f"training.early_stopping.monitor: 'val_roc_auc' needs two classes; "
                f"this model has {num_classes}"
            )
        return [PositiveClassAUC()]
    return [ConfusionMetric(num_classes, kind)]
