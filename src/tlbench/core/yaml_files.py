"""Reading the YAML a user writes (study and dataset configs): safe, and without aliases.

A YAML alias (``*name``, also ``<<: *name``) repeats a node written elsewhere;
nested aliases expand a few lines into a config of billions of entries (the
"billion laughs"), and a shared node edited in one place changes every place
that refers to it. :func:`load_yaml` refuses any alias with an error naming the
file, the line and the alias; anchors alone (``&name``) are harmless and kept.
"""

from __future__ import annotations

import os
from typing import Any

import yaml


class YAMLAliasError(ValueError):
    """A YAML alias in a config; the message names the file, the line and the alias."""


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that raises on the first alias instead of resolving it."""

    source = "<yaml>"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YAMLAliasError(
                f"{self.source}: line {event.start_mark.line + 1}: YAML alias *{event.anchor} "
                "refused (aliases can expand a few lines into a huge config); write the "
                "value out where it is used"
            )
        return super().compose_node(parent, index)


def load_yaml(path: str | os.PathLike) -> Any:
    """The YAML document in ``path``, read safely; an alias is a :class:`YAMLAliasError`."""
    with open(path) as handle:
        loader = _NoAliasLoader(handle)
        loader.source = str(path)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
