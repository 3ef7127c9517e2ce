"""S3 and S3-compatible servers through boto3 (the `[s3]` extra): list, download, publish.

Credentials come from where every AWS tool finds them (environment, ~/.aws files, an
instance or pod role); the endpoint from `--s3_endpoint`, `AWS_ENDPOINT_URL_S3` /
`AWS_ENDPOINT_URL`, or TF Serving's `S3_ENDPOINT` (with `S3_USE_HTTPS`, `S3_VERIFY_SSL`);
the region from `AWS_DEFAULT_REGION`, TF Serving's `AWS_REGION`, or ~/.aws/config.
Nothing here logs a credential: errors name the URI, the S3 error code and the endpoint.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyserving.errors import MissingExtra, StorageError
from pyserving.signature import REQUIRED_FILES, SIGNATURE_FILE
from pyserving.storage import ObjectUri, safe_relative

# S3 error codes that retrying will not fix: the credentials or the bucket are wrong.
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
}
_CREDENTIALS_HELP = (
    "check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "~/.aws/credentials or the instance's role) and the bucket's policy"
)


@dataclass(frozen=True)
class RemoteVersion:
    """One version folder on object storage: its files (path below the folder, size)."""

    version: int
    files: tuple[tuple[str, int], ...]

    @property
    def complete(self) -> bool:
        """Whether every file a version needs is there, servable.json (uploaded last) too."""
        names = {path for path, _ in self.files}
        return all(name in names for name in REQUIRED_FILES)


def endpoint_url(flag: str = "", env: Mapping[str, str] = os.environ) -> str | None:
    """The S3 endpoint to use: the flag, AWS's variables, then TF Serving's; None: AWS."""
    for value in (flag, env.get("AWS_ENDPOINT_URL_S3"), env.get("AWS_ENDPOINT_URL")):
        if value:
            return value
    host = env.get("S3_ENDPOINT", "")
    if not host:
        return None
    if "://" in host:
        return host
    https = env.get("S3_USE_HTTPS", "1") not in ("0", "false", "False")
    return f"{'https' if https else 'http'}://{host}"


class S3Store:
    """One S3 client, made on first use and shared by threads; every call may raise
    StorageError (`transient` says whether trying again later may help) or MissingExtra."""

    def __init__(self, endpoint: str = "") -> None:
        self._endpoint = endpoint_url(endpoint)
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self._endpoint or "AWS S3"

    def versions(self, uri: ObjectUri) -> dict[int, RemoteVersion]:
        """Every version folder under `uri` (complete or not), by version number."""
        base = f"{uri.prefix}/" if uri.prefix else ""
        found: dict[int, dict[str, int]] = {}
        with self._errors(uri, "listing"):
            pages = (
                self._s3().get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=base)
            )
            for page in pages:
                for entry in page.get("Contents", ()):
                    folder, _, path = entry["Key"][len(base) :].partition("/")
                    # A console's "folder" marker is a key ending in a slash: not a file.
                    if not (folder.isascii() and folder.isdigit() and int(folder) > 0):
                        continue
                    if path and not path.endswith("/"):
                        found.setdefault(int(folder), {})[path] = int(entry["Size"])
        return {v: RemoteVersion(v, tuple(sorted(files.items()))) for v, files in found.items()}

    def download(self, uri: ObjectUri, version: RemoteVersion, folder: Path) -> None:
        """Copy `version` of the model at `uri` into `folder`, servable.json last, checking
        every file's size against the listing."""
        where = uri.child(str(version.version))
        for path, size in sorted(version.files, key=lambda f: (f[0] == SIGNATURE_FILE, f[0])):
            if not safe_relative(path):
                raise StorageError(f"{where}: object {path!r} cannot be a file name")
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._errors(where, f"downloading {path}"):
                self._s3().download_file(where.bucket, f"{where.prefix}/{path}", str(target))
            got = target.stat().st_size
            if got != size:
                raise StorageError(
                    f"{where}/{path}: {got} bytes downloaded, {size} listed: it changed while "
                    "being copied; trying again later"
                )

    def publish(self, folder: Path, model: ObjectUri) -> ObjectUri:
        """Upload the version in `folder` under `model`, servable.json last, so that no
        server lists it before it is whole. Returns where it went.

        Its number is the folder's, or one more than the newest there if that is not
        older. On failure the objects already uploaded are deleted.
        """
        newest = max(self.versions(model), default=0)
        target = model.child(str(max(int(folder.name), newest + 1)))
        files = sorted(
            (p for p in folder.rglob("*") if p.is_file()),
            key=lambda p: (p == folder / SIGNATURE_FILE, p.as_posix()),
        )
        uploaded: list[str] = []
        try:
            for path in files:
                key = f"{target.prefix}/{path.relative_to(folder).as_posix()}"
                with self._errors(target, f"uploading {path.name}"):
                    self._s3().upload_file(str(path), target.bucket, key)
                uploaded.append(key)
        except BaseException:
            for key in uploaded:
                with suppress(Exception):
                    self._s3().delete_object(Bucket=target.bucket, Key=key)
            raise
        return target

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise MissingExtra("boto3", "s3", "an s3:// repository") from exc
        # botocore's debug lines carry signed headers, its info lines where credentials
        # came from: keep both out of the server's log.
        for name in ("boto3", "botocore", "s3transfer", "urllib3"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            # A few quick retries per call; the mirror's own backoff handles longer outages.
            retries={"max_attempts": 3, "mode": "standard"},
            # S3-compatible servers rarely have a DNS name per bucket.
            s3={"addressing_style": "path"} if self._endpoint else None,
        )
        verify = os.environ.get("S3_VERIFY_SSL", "1") not in ("0", "false", "False")
        return boto3.session.Session().client(
            "s3",
            # TF Serving reads AWS_REGION; boto3 reads AWS_DEFAULT_REGION and ~/.aws/config.
            region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"),
            endpoint_url=self._endpoint,
            config=config,
            verify=None if verify else False,
        )

    @contextmanager
    def _errors(self, uri: ObjectUri, doing: str) -> Iterator[None]:
        """Turn botocore's exceptions into one-line StorageErrors."""
        self._s3()  # MissingExtra without boto3, before botocore is imported here
        from botocore import exceptions as bx

        try:
            yield
        except bx.NoCredentialsError as exc:
            raise StorageError(
                f"{uri}: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the machine a role",
                transient=False,
            ) from exc
        except (bx.ClientError, bx.BotoCoreError) as exc:
            raise self._error(uri, doing, exc) from exc
        except Exception as exc:
            # boto3's transfers raise their own exception while handling a ClientError.
            inner = exc.__cause__ or exc.__context__
            if isinstance(inner, bx.ClientError):
                raise self._error(uri, doing, inner) from exc
            raise

    def _error(self, uri: ObjectUri, doing: str, exc: Exception) -> StorageError:
        response = getattr(exc, "response", None)
        if not isinstance(response, dict):  # no answer: the network, a timeout
            return StorageError(f"{uri}: {doing}: cannot reach {self.endpoint}: {exc}")
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _DENIED or status == 403 or code == "403":
            return StorageError(
                f"{uri}: {doing}: access denied by {self.endpoint} ({code or status}): "
                f"{_CREDENTIALS_HELP}",
                transient=False,
            )
        if code == "NoSuchBucket":
            return StorageError(
                f"{uri}: there is no bucket {uri.bucket!r} at {self.endpoint}", transient=False
            )
        message = f": {error['Message']}" if error.get("Message") else ""
        return StorageError(f"{uri}: {doing}: {code or status} from {self.endpoint}{message}")
