"""Custom backbones, registered into :data:`tlbench.models.backbones.base.BACKBONES` on import.

``seed003_cnn`` (seeds 003/004), ``seed000_cnn`` (seed 000's ``CNN_10_relu``),
``alexnet`` (architecture only) and ``small_cnn``; :mod:`tlbench.models.backbones` imports
this module, so ``import tlbench.models.backbones`` registers them (their names are
:data:`tlbench.training.names.CUSTOM_BACKBONES`).
"""

from __future__ import annotations

import keras

from tlbench.models.backbones.base import (
    BACKBONES,
    Backbone,
    check_kwargs,
    check_min_size,
    layer_blocks,
)
from tlbench.models.preprocess import Equalize, Standardize, check_mode

#: Moving-average momentum of the custom CNNs' BatchNormalization (see _conv_bn_relu).
BN_MOMENTUM = 0.9


def _conv_bn_relu(x, filters: int, kernel: int, block: str, index: int, strides: int = 1):
    """Conv2D (same padding) - BatchNormalization - ReLU, named ``{block}_conv{index}`` etc.

    BatchNorm momentum is 0.9 (Keras default 0.99): small studies take few steps
    (10 images per class, a few batches an epoch), and after ~100 steps at 0.99 the
    moving statistics are still half their initial values, so inference-mode
    accuracy collapses while training-mode accuracy looks fine — seed 000's
    train/test signature. At 0.9 they track the data within a few dozen steps.
    """
    x = keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", name=f"{block}_conv{index}"
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{block}_bn{index}")(x)
    return keras.layers.ReLU(name=f"{block}_relu{index}")(x)


def _finish_custom(
    name: str,
    inputs,
    outputs,
    weights: str,
    min_size: int,
    preprocess_mode: str,
) -> Backbone:
    """Wrap a custom functional backbone; load a weights file; reject imagenet."""
    model = keras.Model(inputs, outputs, name="backbone")
    if weights == "imagenet":
        raise ValueError(
            f"backbone {name} has no ImageNet weights; valid weights for it: none, "
            "a path to a weights file, {run: <run folder>}, or {random: SEED}"
        )
    if weights != "none":
        model.load_weights(weights)
    return Backbone(
        name=name,
        model=model,
        preprocess_mode=check_mode(preprocess_mode),
        pretrained=weights != "none",
        blocks=layer_blocks(model),
        min_size=min_size,
    )


@BACKBONES.register("seed003_cnn")
def seed003_cnn(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """The CNN of seeds 003/004 (Oxford-IIIT Pet), without its head.

    ``block1``: Conv 7x7/2, 64 - BN - ReLU - MaxPool 2; ``block2``: [Conv 3x3, 128 -
    BN - ReLU] x 2 - MaxPool 2; ``block3``: [Conv 3x3, 256 - BN - ReLU] x 2 - MaxPool 2.
    At 224x224 the output is 14x14x256 and the conv parameter counts are 9472,
    73856, 147584, 295168, 590080, as in the seeds' layer tables (global average
    pooling + Dense is the head's job). kwargs: ``first_stride`` (2; seed 004's
    autoencoder tables show 224x224 after the first conv, i.e. stride 1).
    """
    opts = check_kwargs(name, kwargs, {"first_stride": 2})
    stride = int(opts["first_stride"])
    min_size = 8 * stride
    check_min_size(name, input_shape, min_size)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn_relu(inputs, 64, 7, "block1", 1, strides=stride)
    x = keras.layers.MaxPooling2D(2, name="block1_pool")(x)
    for block, filters in (("block2", 128), ("block3", 256)):
        x = _conv_bn_relu(x, filters, 3, block, 1)
        x = _conv_bn_relu(x, filters, 3, block, 2)
        x = keras.layers.MaxPooling2D(2, name=f"{block}_pool")(x)
    return _finish_custom(name, inputs, x, weights, min_size, "unit")


@BACKBONES.register("seed000_cnn")
def seed000_cnn(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """Seed 000's own GTSRB CNN, ``CNN_10_relu`` (0.948 test accuracy there), without its top.

    Seed 000's report names the model but gives no layer table; the layers are
    those of ``CNN_10_relu`` in the configuration list of the same lab series:
    Conv 3x3 6 - Conv 3x3 12 - Conv 3x3 24 - MaxPool 2 - Conv 3x3 48 - MaxPool 2 -
    Flatten - Dense 1024, all ReLU, ``same`` padding, no BN. Blocks: ``block1``..
    ``block4`` (one per conv) and ``block5`` (Flatten + Dense). The output is the
    1024-vector; ``dense_units: 0`` stops at the 4D map instead.
    """
    opts = check_kwargs(name, kwargs, {"dense_units": 1024})
    check_min_size(name, input_shape, 4)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, filters in enumerate((6, 12, 24, 48), start=1):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"block{i}_conv"
        )(x)
        if i >= 3:
            x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    if int(opts["dense_units"]) > 0:
        x = keras.layers.Flatten(name="block5_flatten")(x)
        x = keras.layers.Dense(int(opts["dense_units"]), activation="relu", name="block5_dense")(x)
    return _finish_custom(name, inputs, x, weights, 4, "unit")


@BACKBONES.register("alexnet")
def alexnet(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """AlexNet's convolutional part (torchvision layout, seed 002), architecture only.

    ``block1``: pad 2, Conv 11x11/4, 64 - ReLU - MaxPool 3/2; ``block2``: pad 2,
    Conv 5x5 192 - ReLU - MaxPool 3/2; ``block3``..``block5``: Conv 3x3 384, 256,
    256 - ReLU, MaxPool 3/2 after ``block5``. 2,469,696 parameters; 6x6x256 = 9216
    features at 224x224 as in seed 002. No Keras weights exist (torch preprocessing).
    """
    check_kwargs(name, kwargs, {})
    min_size = 63
    check_min_size(name, input_shape, min_size)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.ZeroPadding2D(2, name="block1_pad")(inputs)
    x = keras.layers.Conv2D(64, 11, strides=4, activation="relu", name="block1_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="block1_pool")(x)
    x = keras.layers.ZeroPadding2D(2, name="block2_pad")(x)
    x = keras.layers.Conv2D(192, 5, activation="relu", name="block2_conv")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="block2_pool")(x)
    for i, filters in ((3, 384), (4, 256), (5, 256)):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"block{i}_conv"
        )(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="block5_pool")(x)
    return _finish_custom(name, inputs, x, weights, min_size, "torch")


@BACKBONES.register("small_cnn")
def small_cnn(name: str, weights: str, kwargs: dict, input_shape: tuple[int, int, int]):
    """A compact CNN for small images (e.g. 32x32 GTSRB) trained from scratch.

    One block per entry of ``widths`` (default ``[32, 64, 128]``): [Conv 3x3 -
    BN - ReLU] x ``convs_per_block`` (default 2) - MaxPool 2, then Dropout
    ``dropout`` (default 0: none). ``standardize: true`` puts a per-image
    :class:`~tlbench.models.preprocess.Standardize` layer (``block0_standardize``) first;
    ``equalize: true`` a per-image luma histogram equalisation,
    :class:`~tlbench.models.preprocess.Equalize` (``block0_equalize``), before it.
    Output: a 4D map of side ``input / 2**len(widths)``, or with ``dense_units: n``
    a last block of Flatten - Dense n - ReLU, which keeps where in the image a
    feature is (global average pooling of the map does not).
    """
    opts = check_kwargs(
        name,
        kwargs,
        {
            "widths": [32, 64, 128],
            "convs_per_block": 2,
            "dropout": 0.0,
            "standardize": False,
            "equalize": False,
            "dense_units": 0,
        },
    )
    widths = [int(w) for w in opts["widths"]]
    convs = int(opts["convs_per_block"])
    dropout = float(opts["dropout"])
    dense = int(opts["dense_units"])
    if not widths or min(widths) < 1 or convs < 1 or not 0.0 <= dropout < 1.0 or dense < 0:
        raise ValueError(
            "small_cnn needs non-empty positive widths, convs_per_block >= 1, "
            f"0 <= dropout < 1 and dense_units >= 0, got {opts}"
        )
    for flag in ("standardize", "equalize"):
        if not isinstance(opts[flag], bool):
            raise ValueError(f"small_cnn {flag} must be true or false, got {opts[flag]!r}")
    min_size = 2 ** len(widths)
    check_min_size(name, input_shape, min_size)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if opts["equalize"]:
        x = Equalize(name="block0_equalize")(x)  # the input is 0..1 (Preprocess "unit")
    if opts["standardize"]:
        x = Standardize(name="block0_standardize")(x)
    for b, width in enumerate(widths, start=1):
        for c in range(1, convs + 1):
            x = _conv_bn_relu(x, width, 3, f"block{b}", c)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"block{b}_dropout")(x)
    if dense:
        top = f"block{len(widths) + 1}"
        x = keras.layers.Flatten(name=f"{top}_flatten")(x)
        x = keras.layers.Dense(dense, activation="relu", name=f"{top}_dense")(x)
    return _finish_custom(name, inputs, x, weights, min_size, "unit")
