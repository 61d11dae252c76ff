"""Models: what a run trains, untrained.

Backbones (``backbones/``: keras.applications by name, the custom CNNs, weights from the
Keras cache or an earlier run), preprocessing, augmentation presets, custom layers, the
input pipeline (batches, input layers, pooling, predict), the linear probe's logistic
regression and the assembly of a classifier. Imports core and datasets.
"""
