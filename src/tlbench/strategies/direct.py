"""The ``direct`` strategy: the source model's own classifier, target classes
mapped to source classes by majority vote on the train split (no gradient step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from tlbench.core.errors import SpecError
from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.strategies.base import Phase, Strategy, TrainContext, TrainResult, register


@register
class Direct(Strategy):
    """The source model's own classifier; target classes mapped to source classes.

    Each target class is mapped to a source class by majority prediction on
    its TRAIN images; target probabilities are the mapped source probabilities
    renormalised. No gradient step. ``mapping``:

    * ``one_to_one`` (default): distinct source classes, chosen to maximise the
      number of train images predicted as their class's source class (an
      assignment problem; each class keeps its majority source class when
      those are already distinct). Needs at least as many source classes.
    * ``majority``: each target class takes its own most predicted source
      class; several target classes may share one and then tie.
    """

    name = "direct"
    trains = False
    builds_model = False
    defaults: ClassVar[dict[str, Any]] = {"mapping": "one_to_one"}
    MAPPINGS: ClassVar[tuple[str, ...]] = ("one_to_one", "majority")

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        if params["mapping"] not in cls.MAPPINGS:
            raise SpecError(
                f"strategy.params.mapping: unknown mapping {params['mapping']!r}; "
                f"valid mappings: {', '.join(cls.MAPPINGS)}"
            )

    def phases(self, spec: Mapping[str, Any]) -> list[Phase]:
        return []

    def train(self, ctx: TrainContext) -> TrainResult:
        """The source classifier with the target classes mapped by majority vote on
        the TRAIN split; ``direct_mapping`` (target -> source class) in the extras."""
        # deferred: imports Keras; the parse-time check imports the strategies
        from tlbench.models.backbones.applications import build_source_classifier
        from tlbench.models.inputs import predict
        from tlbench.models.layers import SelectClasses

        spec, classes, image_shape = ctx.spec, ctx.classes, ctx.image_shape
        x_train, y_train = ctx.splits["train"]
        source, source_classes = build_source_classifier(spec["backbone"], image_shape)
        prob = predict(source, x_train, spec["training"]["batch_size"])
        votes = vote_counts(prob.argmax(axis=1), np.asarray(y_train), classes, prob.shape[1])
        mapping = map_classes(votes, self.params["mapping"])
        inputs = keras.Input(shape=image_shape, name="image")
        outputs = SelectClasses(mapping, name="select_classes")(source(inputs))
        model = keras.Model(inputs, outputs, name="classifier")
        names = {classes[c]: str(source_classes[m]) for c, m in enumerate(mapping)}
        return ctx.result(model, pretrained=True, extras={"direct_mapping": names})


def vote_counts(
    predicted: np.ndarray, y: np.ndarray, classes: list[str], num_source: int
) -> np.ndarray:
    """``counts[c, s]``: train images of target class c predicted as source class s."""
    counts = np.zeros((len(classes), num_source), dtype=np.int64)
    np.add.at(counts, (y, predicted), 1)
    for c, name in enumerate(classes):
        if counts[c].sum() == 0:
            raise ValueError(f"direct: class {name!r} has no train images to map to a source class")
    return counts


def map_classes(counts: np.ndarray, how: str) -> list[int]:
    """Source class of each target class from the vote ``counts`` (see ``Direct``)."""
    majority = counts.argmax(axis=1)
    if how == "majority" or len(set(majority.tolist())) == len(majority):
        return [int(s) for s in majority]
    num_target, num_source = counts.shape
    if num_source < num_target:
        raise ValueError(
            f"direct: mapping one_to_one needs at least as many source classes "
            f"({num_source}) as target classes ({num_target}); use mapping: majority"
        )
    # deferred: SciPy on first use; the parse-time check imports the strategies
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(counts, maximize=True)
    return [int(s) for _, s in sorted(zip(rows, cols, strict=True))]
