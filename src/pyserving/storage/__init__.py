"""Object storage as a model repository: `s3://BUCKET/PREFIX` URIs, read and written.

A version on object storage is complete once its servable.json is there: the exporter
uploads it last (`s3.S3Store.publish`), so a version still being uploaded is never listed.
The server copies complete versions into a local cache (`core/mirror.py`) and loads them
from there. Only s3:// (AWS S3 and the servers that speak its API) is supported; any
other scheme is refused in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyserving.errors import ConfigError

SUPPORTED = ("s3",)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# S3's own bucket naming rules (3-63 of lower-case letters, digits, dots and hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class ObjectUri:
    """A folder on object storage: `s3://bucket/prefix` (prefix without slashes at its ends)."""

    scheme: str
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def child(self, name: str) -> ObjectUri:
        """The folder `name` inside this one."""
        return ObjectUri(self.scheme, self.bucket, f"{self.prefix}/{name}".strip("/"))

    @property
    def parts(self) -> tuple[str, ...]:
        """The bucket and each folder of the prefix, for a local path that mirrors it."""
        return (self.bucket, *(p for p in self.prefix.split("/") if p))


def is_uri(text: str) -> bool:
    """Whether `text` names a place by URI (`s3://...`, `gs://...`) rather than a local path."""
    return bool(_SCHEME.match(text))


def parse_uri(text: str) -> ObjectUri:
    """`s3://bucket/prefix` as an ObjectUri. Raises ConfigError for another scheme, or a
    bucket or prefix S3 cannot hold, naming what is supported."""
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else ""
    if scheme not in SUPPORTED:
        raise ConfigError(
            f"{text}: {scheme or 'this'}:// repositories are not supported; a repository is "
            "a local folder or s3://BUCKET/PREFIX (S3 or an S3-compatible server)"
        )
    bucket, _, prefix = text[len(scheme) + 3 :].partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigError(f"{text}: {bucket!r} is not an S3 bucket name")
    folders = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in folders):
        raise ConfigError(f"{text}: '.' and '..' are not folders on object storage")
    return ObjectUri(scheme, bucket, "/".join(folders))


def safe_relative(key: str) -> bool:
    """Whether an object's path below a version folder may become a local file path."""
    parts = key.split("/")
    return bool(key) and all(p not in ("", ".", "..") for p in parts)
