"""The ``autoencoder`` strategy: greedy layer-wise convolutional autoencoder
pretraining of the backbone (one stage per block, a decoder per stage, MSE on the
preprocessed TRAIN images), then the classifier's phases as in ``fine_tune``;
``reconstructions.npz`` shows a few val images through every stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tlbench.core.errors import RunFailed, SpecError
from tlbench.core.lazy import keras  # imported on first use: the parse-time check needs none
from tlbench.core.seeds import derived_seed
from tlbench.strategies.base import (
    Phase,
    Strategy,
    TrainContext,
    TrainResult,
    backbone_layers,
    block_names,
    block_span,
    positive_float,
    positive_int,
    register,
    set_trainable,
)

#: Second part of the seed of autoencoder stage decoders' initial weights
#: (``derived_seed(seed, DECODER_SEED_TAG, stage)``), apart from epochs' ``(seed, epoch)``.
DECODER_SEED_TAG = 0xDEC0DE


@register
class Autoencoder(Strategy):
    """Greedy layer-wise convolutional autoencoder pretraining, then the classifier.

    Stage i trains block i (blocks before it frozen) plus a decoder
    (Conv + UpSampling2D back to the input resolution, final 3-channel Conv)
    to reconstruct the preprocessed TRAIN images with MSE, for ``ae_epochs``.
    ``stages``: how many blocks (default: all). Then the decoder is dropped
    and backbone + head train as in ``fine_tune``, BatchNorm layers included.
    The backbone starts from random weights unless the spec's backbone entry
    names weights explicitly.
    """

    name = "autoencoder"
    default_weights = "none"
    defaults = {"stages": None, "ae_epochs": 5, "ae_learning_rate": None, "reconstructions": 4}

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        positive_int(params, "stages", allow_none=True)
        positive_int(params, "ae_epochs")
        positive_float(params, "ae_learning_rate", allow_none=True)
        positive_int(params, "reconstructions")

    def stage_count(self, backbone: Any) -> int:
        """Number of autoencoder stages for ``backbone`` (checked against its blocks)."""
        if not backbone.blocks:
            raise SpecError(
                f"strategy {self.name!r}: backbone {backbone.name!r} declares no blocks"
            )
        stages = self.params["stages"] or len(backbone.blocks)
        if stages > len(backbone.blocks):
            raise SpecError(
                f"strategy.params.stages: {stages} exceeds the {len(backbone.blocks)} blocks "
                f"of backbone {backbone.name!r}"
            )
        return stages

    def configure_stage(self, stage: int, backbone: Any) -> None:
        """Stage ``stage`` (0-based): block ``stage`` trains, the blocks below are frozen."""
        names = block_names(backbone)
        _, last = block_span(backbone, names[stage], "stages")
        start = 0 if stage == 0 else block_span(backbone, names[stage - 1], "stages")[1] + 1
        set_trainable(backbone.model, True)
        for i, layer in enumerate(backbone_layers(backbone.model)):
            layer.trainable = start <= i <= last

    def stage_output_layer(self, stage: int, backbone: Any) -> str:
        """Name of the last layer of block ``stage`` (the encoder output of that stage)."""
        _, last = block_span(backbone, block_names(backbone)[stage], "stages")
        return backbone_layers(backbone.model)[last].name

    def check_backbone(self, backbone: Any) -> None:
        self.stage_count(backbone)

    def train(self, ctx: TrainContext) -> TrainResult:
        """The autoencoder stages (:func:`autoencoder_stages`), then the phases."""
        x_train, x_val = ctx.splits["train"][0], ctx.splits["val"][0]
        backbone = ctx.built.backbone
        try:
            recon = autoencoder_stages(ctx.spec, self, backbone, x_train, x_val, ctx.trainer)
        except RunFailed as failure:
            return ctx.result(None, failure=str(failure), pretrained=bool(backbone.pretrained))
        result = super().train(ctx)
        result.arrays["reconstructions.npz"] = recon
        return result


def to_pixels(x: np.ndarray, mode: str) -> np.ndarray:
    """Invert :class:`tlbench.models.preprocess.Preprocess` (for showing reconstructions)."""
    # deferred: imports Keras; the parse-time check imports the strategies
    from tlbench.models.preprocess import IMAGENET_MEAN_BGR_255, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

    x = np.asarray(x, dtype=np.float32)
    if mode == "tf":
        x = (x + 1.0) * 127.5
    elif mode == "torch":
        x = (x * np.float32(IMAGENET_STD_RGB) + np.float32(IMAGENET_MEAN_RGB)) * 255.0
    elif mode == "caffe":
        x = (x + np.float32(IMAGENET_MEAN_BGR_255))[..., ::-1]
    elif mode == "unit":
        x = x * 255.0
    return x


def build_decoder(feature_shape: Sequence[int], size: int) -> keras.Model:
    """Decoder of an autoencoder stage: [Conv 3x3 relu -> UpSampling2D 2] until the
    input resolution (a final Resizing when it is not a power-of-two multiple),
    then a 3-channel Conv 3x3 (linear), as in seed 004."""
    height, _, channels = (int(s) for s in feature_shape)
    inputs = keras.Input(shape=tuple(int(s) for s in feature_shape), name="code")
    x, filters, step = inputs, channels, 0
    while height < size:
        step += 1
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"dec{step}_conv"
        )(x)
        x = keras.layers.UpSampling2D(2, name=f"dec{step}_up")(x)
        height *= 2
        filters = max(16, filters // 2)
    if height != size:
        x = keras.layers.Resizing(size, size, name="dec_resize")(x)
    outputs = keras.layers.Conv2D(3, 3, padding="same", name="dec_out", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="decoder")


def preprocessed(spec: Mapping[str, Any], backbone: Any, x: np.ndarray) -> np.ndarray:
    """Images as the backbone sees them (resized and preprocessed), float32."""
    # deferred: imports Keras; the parse-time check imports the strategies
    from tlbench.models.inputs import ImageBatches, fit_input, input_pipeline

    training = spec["training"]
    inputs = keras.Input(shape=tuple(x.shape[1:]))
    outputs = input_pipeline(
        inputs,
        training["input_size"],
        training["interpolation"],
        backbone.preprocess_mode,
    )
    model = keras.Model(inputs, outputs)
    return np.asarray(
        model.predict(fit_input(ImageBatches(x, None, training["batch_size"])), verbose=0),
        np.float32,
    )


def autoencoder_stages(
    spec: Mapping[str, Any],
    strategy: Autoencoder,
    backbone: Any,
    x_train: np.ndarray,
    x_val: np.ndarray,
    trainer: Any,
) -> dict[str, np.ndarray]:
    """Greedy layer-wise autoencoder pretraining of ``backbone``; returns reconstructions."""

    training, params = spec["training"], strategy.params
    image_size, size = int(x_train.shape[1]), training["input_size"]
    stages = strategy.stage_count(backbone)
    xp_train = preprocessed(spec, backbone, x_train)
    xp_val = preprocessed(spec, backbone, x_val)
    shown = xp_val[: params["reconstructions"]]
    recon: dict[str, np.ndarray] = {"images": np.asarray(x_val[: len(shown)], np.uint8)}
    lr = params["ae_learning_rate"] or training["learning_rate"]
    for stage in range(stages):
        strategy.configure_stage(stage, backbone)
        layer = strategy.stage_output_layer(stage, backbone)
        code = backbone.model.get_layer(layer).output
        if len(code.shape) != 4:
            raise SpecError(
                f"strategy autoencoder: block {backbone.blocks[stage][0]!r} of backbone "
                f"{backbone.name!r} outputs shape {tuple(code.shape)}, not a 4D feature map; "
                "the autoencoder needs convolutional blocks (set strategy.params.stages lower)"
            )
        # the decoder's initial weights from (seed, stage), whichever stages were restored
        keras.utils.set_random_seed(derived_seed(spec["seed"], DECODER_SEED_TAG, stage))
        encoder = keras.Model(backbone.model.input, code, name=f"encoder{stage + 1}")
        inputs = keras.Input(shape=(size, size, 3), name="preprocessed")
        decoder = build_decoder(code.shape[1:], size)
        ae = keras.Model(inputs, decoder(encoder(inputs)), name=f"autoencoder{stage + 1}")
        phase = Phase(f"ae_stage{stage + 1}", params["ae_epochs"], lr)
        trainer.fit(
            ae,
            phase,
            (xp_train, xp_train),
            (xp_val, xp_val),
            loss="mse",
            metrics=False,
            early_stopping=False,
        )
        out = to_pixels(ae.predict(shown, verbose=0), backbone.preprocess_mode)
        if size != image_size:
            out = keras.ops.convert_to_numpy(keras.ops.image.resize(out, (image_size, image_size)))
        recon[f"stage{stage + 1}"] = np.clip(out, 0, 255).astype(np.float32)
    return recon
