"""Backbones by name: the record and registry (``base``), keras.applications
(``applications``), the custom CNNs (``custom``), Keras's weight files without a network
(``keras_weights``) and weights from an earlier run (``from_run``).
"""
