"""Version labels, as TensorFlow Serving defines them: a label names one version of a model.

A request asks for a version number, a label, or neither (the newest); `resolve` turns that
into a version number, the one place a request's label is read, whatever adapter it came
through. `check` says whether a config's labels may be applied to what is available: a
label must name an available version, except that with
`--allow_version_labels_for_unavailable_models` a label not yet in use may name any
version (so a canary can be labelled before it loads), as in TF Serving.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pyserving.errors import ConfigError, InvalidInput, ModelNotFound

# A label travels in a REST path (`/v1/models/NAME/labels/LABEL:predict`).
_LABEL = re.compile(r"^[^/:\s]+$")


def parse_labels(pairs: Iterable[tuple[Any, Any]], where: str) -> tuple[tuple[str, int], ...]:
    """A config's `version_labels` as (label, version) pairs sorted by label.

    Raises ConfigError naming `where` for a label a REST path cannot carry or a version
    that is not a positive integer.
    """
    labels = []
    for label, version in pairs:
        if not isinstance(label, str) or not _LABEL.match(label):
            raise ConfigError(
                f"{where}: version label {label!r} must be a non-empty name without '/', ':' "
                "or spaces"
            )
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(
                f"{where}: version label {label!r} must name a positive version, got {version!r}"
            )
        labels.append((label, version))
    return tuple(sorted(labels))


def resolve(model: str, labels: Mapping[str, int], version: int, label: str) -> int:
    """The version a request for `version` or `label` of `model` asks for (0: the newest).

    Raises InvalidInput when both are given, ModelNotFound for a label the model lacks.
    """
    if not label:
        return version
    if version:
        raise InvalidInput(
            f"ask for a version or a version label, not both (version {version}, label {label!r})"
        )
    found = labels.get(label)
    if found is None:
        known = ", ".join(sorted(labels)) or "none"
        raise ModelNotFound(f"model {model!r} has no version label {label!r} (labels: {known})")
    return found


def check(
    model: str,
    wanted: Mapping[str, int],
    current: Mapping[str, int],
    available: Collection[int],
    allow_unavailable: bool,
) -> None:
    """Raise ConfigError if `wanted` labels a version of `model` that is not available.

    With `allow_unavailable`, only a label already in use (`current`) must name an
    available version: moving one to a version that cannot answer would fail its requests.
    """
    for label, version in sorted(wanted.items()):
        if version in available or (allow_unavailable and label not in current):
            continue
        known = ", ".join(str(v) for v in sorted(available)) or "none"
        hint = (
            " (a label in use moves only to an available version)"
            if allow_unavailable
            else "; --allow_version_labels_for_unavailable_models lets a new label name it"
        )
        raise ConfigError(
            f"model {model!r}: version label {label!r} names version {version}, which is not "
            f"available (available: {known}){hint}"
        )


def by_version(labels: Mapping[str, int]) -> dict[int, tuple[str, ...]]:
    """The labels of each labelled version, sorted."""
    versions: dict[int, tuple[str, ...]] = {}
    for label, version in sorted(labels.items()):
        versions[version] = (*versions.get(version, ()), label)
    return versions
