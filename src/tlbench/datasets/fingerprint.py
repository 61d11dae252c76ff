"""A prepared dataset's content hash (:func:`data_fingerprint`): what a resumed run checks
before it continues from a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def data_fingerprint(data: Any) -> str:
    """A content hash of a prepared dataset, cheap to compute at every run start.

    sha256 over manifest.json (without its ``prepare_seconds``), classes.json,
    the train and val labels and, per split, the images' shape and up to 64 evenly
    spaced images (the splits training reads: the test split is not opened).
    Preparing the data again with other labels, classes, size, sources or options
    changes it; preparing it again identically does not.
    """
    digest = hashlib.sha256()
    manifest = {k: v for k, v in data.manifest.items() if k != "prepare_seconds"}
    digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    digest.update(json.dumps(list(data.classes)).encode())
    for name in ("train", "val"):
        x, y = data.split(name)
        digest.update(f"{name} {x.shape} {x.dtype} {y.dtype}".encode())
        digest.update(np.ascontiguousarray(y).tobytes())
        if len(x):
            picks = np.unique(np.linspace(0, len(x) - 1, num=min(64, len(x))).astype(np.int64))
            digest.update(np.ascontiguousarray(x[picks]).tobytes())
    return digest.hexdigest()
