"""Job documents offline: documentSource from local files, and presigned-URL stand-ins served from a folder."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .clock import Clock
from .model import ApiError

S3_HOST = "s3.amazonaws.com"
PRESIGNED_PREFIX = "/presigned/"


class Documents:
    """Maps S3 objects to files under `root` (`s3://BUCKET/KEY` is `root/BUCKET/KEY`) and signs URLs to them.

    A signed URL names the object, its expiry time (epoch seconds on the service's clock) and an HMAC
    over both, so a device can fetch it without credentials until it expires, as with S3.
    """

    def __init__(self, root: str | Path | None, clock: Clock, base_url: str = "", secret: bytes | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.clock = clock
        self.base_url = base_url
        self.secret = secret if secret is not None else secrets.token_bytes(32)

    # ---- documentSource ------------------------------------------------------------------------

    def fetch(self, source: str) -> str:
        """The text at a documentSource: file://PATH, https://s3.amazonaws.com/BUCKET/KEY or a presigned URL of ours."""
        url = urlsplit(source)
        if url.scheme == "file":
            path = Path(unquote(url.path))
        elif url.scheme == "https" and url.netloc == S3_HOST:
            path = self.object_path(*split_object(unquote(url.path)))
        elif source.startswith(self.base_url + PRESIGNED_PREFIX) and self.base_url:
            path = self.object_path(*split_object(unquote(url.path)[len(PRESIGNED_PREFIX) - 1 :]))
        else:
            raise ApiError("InvalidRequest", f"documentSource {source} is not file:// or https://{S3_HOST}/BUCKET/KEY")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiError("InvalidRequest", f"documentSource {source} cannot be read: {exc}") from None

    def object_path(self, bucket: str, key: str) -> Path:
        if self.root is None:
            raise ApiError("InvalidRequest", "the service has no files folder (--files) for S3 objects")
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to(self.root):
            raise ApiError("InvalidRequest", f"s3://{bucket}/{key} is outside the files folder")
        return path

    # ---- presigned URLs ------------------------------------------------------------------------

    def presign(self, bucket: str, key: str, expires_in: int) -> str:
        expires = int(self.clock.now()) + expires_in
        path = f"{PRESIGNED_PREFIX}{quote(bucket)}/{quote(key)}"
        signature = self._sign(bucket, key, expires)
        return f"{self.base_url}{path}?X-Amz-Expires={expires_in}&expires={expires}&signature={signature}"

    def open(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        """(HTTP status, body) for a GET of a presigned URL."""
        try:
            bucket, key = split_object(unquote(path)[len(PRESIGNED_PREFIX) - 1 :])
            expires = int(query.get("expires", ""))
        except (ApiError, ValueError):
            return 404, b"NoSuchKey"
        if not hmac.compare_digest(query.get("signature", ""), self._sign(bucket, key, expires)):
            return 403, b"SignatureDoesNotMatch"
        if self.clock.now() > expires:
            return 403, b"AccessDenied: Request has expired"
        try:
            return 200, self.object_path(bucket, key).read_bytes()
        except (ApiError, OSError):
            return 404, b"NoSuchKey"

    def _sign(self, bucket: str, key: str, expires: int) -> str:
        message = f"{bucket}\n{key}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def split_object(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket or not key:
        raise ApiError("InvalidRequest", f"{path} does not name BUCKET/KEY")
    return bucket, key
