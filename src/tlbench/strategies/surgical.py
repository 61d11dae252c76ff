"""The ``surgical`` strategy: one block of the backbone trains, with the head (Lee et al.,
*Surgical Fine-Tuning Improves Adaptation to Distribution Shifts*, ICLR 2023).

A block is one of the backbone's named blocks (:attr:`Backbone.blocks`, bottom to top:
MobileNet's depthwise-pointwise pairs ``block_N``, MobileNetV2's inverted residuals, a
ResNet's ``convN_blockM``, the layers before the first block as ``stem`` and after the
last as ``top``; :func:`tlbench.models.backbones.base.layer_blocks`). ``block`` names it:
a block name, an index into the blocks (0: the bottom one), or ``auto``: every block of
``candidates`` (default: all) is tried, each from the pretrained weights and a fresh
head for ``trial_epochs`` epochs (history phases ``try_<block>``), and the one with the
best validation accuracy at the end of its trial (ties: the lower validation loss, then
the lower block) trains for ``training.epochs`` from the pretrained weights again. The
choice is made on the validation split (the test split is not in the training context)
and recorded in ``metrics.json`` as ``surgical`` (``block``, ``chosen_on``, and each
trial's ``val_accuracy`` and ``val_loss``). BatchNorm layers of the block: the
``batchnorm`` policy (default ``frozen``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from tlbench.core.errors import RunFailed, SpecError
from tlbench.strategies.base import (
    Phase,
    Strategy,
    TrainContext,
    TrainResult,
    backbone_layers,
    block_names,
    block_span,
    positive_int,
    register,
    set_trainable,
)

AUTO = "auto"


def _is_block(value: Any) -> bool:
    """A block name or a block index (int >= 0)."""
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@register
class Surgical(Strategy):
    """One block of the backbone trains (and the head); ``block``: a name, an index or
    ``auto`` (chosen on validation among ``candidates`` by ``trial_epochs``-epoch trials)."""

    name = "surgical"
    defaults: ClassVar[dict[str, Any]] = {
        "block": AUTO,
        "candidates": None,
        "trial_epochs": 1,
        "batchnorm": "frozen",
    }

    def __init__(self, params=None):
        super().__init__(params)
        #: the block that trains now (a trial's, then the chosen one); None before train()
        self.current: str | None = None

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        block, candidates = params["block"], params["candidates"]
        if not _is_block(block):
            raise SpecError(
                f"strategy.params.block: {block!r} is neither a block name, a block index "
                f"(an integer >= 0) nor {AUTO!r}"
            )
        if candidates is not None:
            if block != AUTO:
                raise SpecError(
                    f"strategy.params.candidates: only with block: {AUTO} (block is {block!r})"
                )
            if (
                not isinstance(candidates, list)
                or not candidates
                or not all(_is_block(c) and c != AUTO for c in candidates)
                or len({repr(c) for c in candidates}) != len(candidates)
            ):
                raise SpecError(
                    f"strategy.params.candidates: {candidates!r} must be a list of distinct "
                    "block names or indices"
                )
        positive_int(params, "trial_epochs")

    def block_name(self, backbone: Any, value: str | int, key: str) -> str:
        """The name of block ``value`` (a name or an index) of ``backbone``; else an error
        naming ``strategy.params.<key>`` and the backbone's blocks."""
        names = block_names(backbone)
        if isinstance(value, int):
            if value >= len(names):
                raise SpecError(
                    f"strategy.params.{key}: block index {value} is out of range for backbone "
                    f"{backbone.name!r} ({len(names)} blocks: {', '.join(names) or 'none'})"
                )
            return names[value]
        block_span(backbone, value, key)  # an unknown name: the error lists the blocks
        return value

    def candidates(self, backbone: Any) -> list[str]:
        """The blocks ``auto`` tries, bottom to top as listed."""
        given = self.params["candidates"]
        if given is None:
            return block_names(backbone)
        return [self.block_name(backbone, value, "candidates") for value in given]

    def training_blocks(self, backbone: Any) -> list[str]:
        """The block that trains now; before ``auto`` has chosen, every candidate (the
        build's check, and the BatchNorm momentum of whichever may train)."""
        if self.current is not None:
            return [self.current]
        if self.params["block"] == AUTO:
            return self.candidates(backbone)
        return [self.block_name(backbone, self.params["block"], "block")]

    def set_layers(self, phase: Phase, backbone: Any) -> None:
        set_trainable(backbone.model, False)
        layers = backbone_layers(backbone.model)
        for block in self.training_blocks(backbone):
            first, last = block_span(backbone, block, "block")
            for layer in layers[first : last + 1]:
                set_trainable(layer, True)

    def train(self, ctx: TrainContext) -> TrainResult:
        backbone = ctx.built.backbone
        if self.params["block"] != AUTO:
            self.current = self.block_name(backbone, self.params["block"], "block")
            result = ctx.trainer.fit_phases(self, ctx)
            result.extras["surgical"] = {"block": self.current, "chosen_on": "spec"}
            return result
        try:
            trials = self.try_blocks(ctx)
        except RunFailed as failure:
            return ctx.result(None, failure=str(failure), pretrained=bool(backbone.pretrained))
        best = max(trials, key=lambda t: (t["val_accuracy"], -t["val_loss"], -t["index"]))
        self.current = best["block"]
        result = ctx.trainer.fit_phases(self, ctx)
        result.extras["surgical"] = {
            "block": best["block"],
            "chosen_on": "validation",
            "trials": [{k: v for k, v in t.items() if k != "index"} for t in trials],
        }
        return result

    def try_blocks(self, ctx: TrainContext) -> list[dict[str, Any]]:
        """Train each candidate block for ``trial_epochs`` from the starting weights; its
        validation accuracy and loss at the end; the model back at the starting weights."""
        # deferred: tlbench.models.inputs imports Keras (the parse-time check imports no Keras)
        from tlbench.models.inputs import ImageBatches

        spec, model = ctx.spec, ctx.built.model
        batch, seed = spec["training"]["batch_size"], spec["seed"]
        (x_train, y_train), (x_val, y_val) = ctx.splits["train"], ctx.splits["val"]
        train = ImageBatches(x_train, y_train, batch, shuffle=True, seed=seed)
        val = ImageBatches(x_val, y_val, batch)
        start = model.get_weights()  # pretrained backbone, fresh head
        trials = []
        for index, block in enumerate(self.candidates(ctx.built.backbone)):
            self.current = block
            phase = Phase(
                f"try_{block}", self.params["trial_epochs"], spec["training"]["learning_rate"]
            )
            self.configure(phase, ctx.built.backbone)
            ctx.trainer.fit(model, phase, train, val, early_stopping=False)
            last = ctx.trainer.rows[-1]
            trials.append(
                {
                    "block": block,
                    "index": index,
                    "val_accuracy": float(last["val_accuracy"]),
                    "val_loss": float(last["val_loss"]),
                }
            )
            model.set_weights(start)
        return trials
