"""Exporting to object storage: export into a temporary folder, then publish from there.

The version is built and verified locally as any export (`write.write_servable`), then
uploaded with servable.json last (`storage.s3.S3Store.publish`), so no server ever lists a
version that is not whole.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pyserving.signature import list_versions
from pyserving.storage import parse_uri
from pyserving.storage.s3 import S3Store


def export_to_storage(
    repository: str, endpoint: str, export: Callable[[Path], object]
) -> list[str]:
    """Run `export(local_repository)`, then upload every version it wrote under
    `repository` (an s3:// URI). Returns the URIs of the versions uploaded."""
    uri = parse_uri(repository)
    store = S3Store(endpoint)
    store.versions(uri)  # wrong credentials or no bucket: say so before exporting
    with tempfile.TemporaryDirectory(prefix="pyserving-export-") as tmp:
        export(Path(tmp))
        return [
            str(store.publish(model / str(version), uri.child(model.name)))
            for model in sorted(Path(tmp).iterdir())
            for version in list_versions(model)
        ]
