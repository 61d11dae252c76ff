"""The layout of a folder dataset: which folders are splits, wrappers or classes, what
is left unused, and which class names clash (used by :mod:`tlbench.datasets.folder`)."""

from __future__ import annotations

from tlbench.datasets.images import is_image_name

SPLIT_DIRS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def check_class_names(classes: list[str]) -> None:
    """Class names (NFC) that are equal but for case or surrounding spaces are an error."""
    seen: dict[str, str] = {}
    for name in classes:
        key = name.casefold().strip()
        if key in seen:
            raise ValueError(
                f"class folders {seen[key]!r} and {name!r} name one class (equal but for case "
                "or spaces); rename one, or merge them"
            )
        seen[key] = name


def folders_with_files(root: str, files: list[str]) -> list[str]:
    """The folders directly in ``root`` that hold a (non-hidden) file at any depth."""
    return sorted(
        {
            n[len(root) :].split("/", 1)[0]
            for n in files
            if "/" in n[len(root) :] and n.startswith(root)
        }
    )


def is_wrapper(folder: str, files: list[str]) -> bool:
    """Whether a folder that is alone at its level is a wrapper to descend into:
    not a split folder, no image directly in it (then it is a class folder), and
    some subfolder holding files."""
    name = folder.rstrip("/").rsplit("/", 1)[-1]
    direct = [n for n in files if n.startswith(folder) and "/" not in n[len(folder) :]]
    return (
        name.lower() not in SPLIT_DIRS
        and not any(is_image_name(n) for n in direct)
        and bool(folders_with_files(folder, files))
    )


def unused_note(unused: list[dict[str, str]]) -> str:
    """`` (not used: path: reason; ...)`` for an error message, or ``""``."""
    if not unused:
        return ""
    shown = "; ".join(f"{u['path']}: {u['reason']}" for u in unused[:5])
    more = f"; and {len(unused) - 5} more" if len(unused) > 5 else ""
    return f" (not used: {shown}{more})"


def record_outside(
    root: str, files: list[str], folders: set[str], keep: list[str], unused: list[dict[str, str]]
) -> None:
    """Record the files directly in ``root`` and its empty folders other than ``keep``."""
    for name in files:
        rest = name[len(root) :]
        if name.startswith(root) and "/" not in rest:
            unused.append({"path": name, "reason": "outside any class folder"})
    for folder in sorted(folders):
        rest = folder[len(root) :]
        if folder.startswith(root) and rest and "/" not in rest and rest not in keep:
            unused.append({"path": folder, "reason": "empty folder"})
