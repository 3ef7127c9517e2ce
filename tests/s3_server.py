"""A real S3-compatible server for the s3:// tests: moto's, on a free loopback port.

moto's standalone server (`moto[server]`, from PyPI) speaks S3's REST API over HTTP as AWS
does, and checks SigV4 signatures and access keys once `require_credentials` is called, so
wrong credentials are refused as S3 refuses them. It runs in the test process, so its
objects outlive `stop` (the port closes: connections are refused) and `start` again on the
same port, as a real outage would look from a server.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from typing import Any
from urllib.parse import parse_qs

REGION = "us-east-1"
_users = itertools.count()  # moto's accounts are the process's: one user per server
_ALLOW_S3: list[dict[str, Any]] = [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]


class S3Server:
    """moto's S3 on 127.0.0.1; `listings` counts the ListObjectsV2 calls it has answered."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self._app = DomainDispatcherApplication(create_backend_app)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.listings = 0
        self.key = ("", "")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on 127.0.0.1: a free port the first time, the same one after."""
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self._count, threaded=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the port; the objects stay for the next `start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(10)
            self._server = None

    def require_credentials(self) -> tuple[str, str]:
        """Make an IAM user allowed s3:*, then refuse every request not signed with its key.

        Returns (access key id, secret key), also kept as `key`.
        """
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        self.key = self.add_user(_ALLOW_S3)
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        return self.key

    def add_user(self, statements: list[dict[str, Any]]) -> tuple[str, str]:
        """Another IAM user, allowed what `statements` say; its (key id, secret key)."""
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        checking = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")  # IAM's own calls, unsigned
        try:
            iam = self.client("iam", ("test", "test"))
            user = f"pyserving-{next(_users)}"
            iam.create_user(UserName=user)
            policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=policy)
            made = iam.create_access_key(UserName=user)["AccessKey"]
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = checking
            ActionAuthenticatorMixin.request_count = 0
        return made["AccessKeyId"], made["SecretAccessKey"]

    def client(self, service: str = "s3", key: tuple[str, str] | None = None) -> Any:
        """A boto3 client of this server, with `key` (default: the user's)."""
        import boto3
        from botocore.config import Config

        key_id, secret = key or self.key
        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def env(self, key: tuple[str, str] | None = None) -> dict[str, str]:
        """The environment a pyserving process needs to reach this server as the user."""
        key_id, secret = key or self.key
        return {
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": REGION,
            # Nothing of the user's own AWS setup.
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def close(self) -> None:
        """Stop, and let moto accept any request again (its settings are the process's)."""
        from moto import settings

        self.stop()
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")

    def _count(self, environ: dict[str, Any], start_response: Any) -> Any:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("REQUEST_METHOD") == "GET" and query.get("list-type") == ["2"]:
            self.listings += 1
        return self._app(environ, start_response)
