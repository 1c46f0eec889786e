"""Job documents offline: documentSource from local files, and presigned-URL stand-ins served from a folder."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .clock import Clock
from .model import ApiError

PRESIGNED_PREFIX = "/presigned/"
# The S3 endpoints AWS accepts in an object URL: s3.amazonaws.com, s3.REGION.amazonaws.com and the older
# s3-REGION.amazonaws.com, each path style (HOST/BUCKET/KEY) or virtual-hosted (BUCKET.HOST/KEY).
S3_HOST = re.compile(r"(?:(?P<bucket>[a-z0-9][a-z0-9.-]*[a-z0-9])\.)?s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com")
S3_FORMS = "https://s3[.REGION].amazonaws.com/BUCKET/KEY, https://BUCKET.s3[.REGION].amazonaws.com/KEY"


def s3_object(url: str) -> tuple[str, str] | None:
    """(bucket, key) named by an S3 object URL in any form AWS accepts, or None for any other URL."""
    parts = urlsplit(url)
    host = S3_HOST.fullmatch(parts.netloc.lower()) if parts.scheme == "https" else None
    if host is None:
        return None
    path = unquote(parts.path)
    if host.group("bucket"):
        bucket, key = host.group("bucket"), path.lstrip("/")
    else:
        bucket, _, key = path.lstrip("/").partition("/")
    return (bucket, key) if bucket and key else None


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
        """The text at a documentSource: file://PATH, an S3 object URL (see S3_FORMS) or a presigned URL of ours.

        Read at CreateJob, as AWS does: a document that is not there fails the creation, naming the file.
        """
        url = urlsplit(source)
        s3 = s3_object(source)
        if url.scheme == "file":
            path = Path(unquote(url.path))
        elif s3 is not None:
            path = self.object_path(*s3)
        elif source.startswith(self.base_url + PRESIGNED_PREFIX) and self.base_url:
            path = self.object_path(*split_object(unquote(url.path)[len(PRESIGNED_PREFIX) - 1 :]))
        else:
            raise ApiError("InvalidRequest", f"documentSource {source} is not file:// nor an S3 object URL: {S3_FORMS}")
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ApiError("InvalidRequest", f"documentSource {source}: no such file {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ApiError("InvalidRequest", f"documentSource {source} cannot be read from {path}: {exc}") from None

    def object_path(self, bucket: str, key: str) -> Path:
        if self.root is None:
            raise ApiError("InvalidRequest", f"s3://{bucket}/{key}: the service has no files folder (--files)")
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to(self.root):
            raise ApiError("InvalidRequest", f"s3://{bucket}/{key} is outside the files folder")
        return path

    # ---- presigned URLs ------------------------------------------------------------------------

    def presign(self, placeholder: str, url: str, expires_in: int) -> str:
        """What replaces an s3-presigned-url placeholder in a document sent to a device.

        Made when the device asks, as AWS does, whether or not the object is there (a GET then answers
        404 NoSuchKey); a placeholder whose URL names no S3 object stays as it was written.
        """
        s3 = s3_object(url)
        if s3 is None:
            return placeholder
        bucket, key = s3
        expires = int(self.clock.now()) + expires_in
        path = f"{PRESIGNED_PREFIX}{quote(bucket)}/{quote(key)}"
        signature = self._sign(bucket, key, expires)
        return f"{self.base_url}{path}?X-Amz-Expires={expires_in}&expires={expires}&signature={signature}"

    def open(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        """(HTTP status, body) for a GET of a presigned URL; a missing object's 404 names the file looked for."""
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
            file = self.object_path(bucket, key)
        except ApiError as err:
            return 404, f"NoSuchKey: {err.message}".encode()
        try:
            return 200, file.read_bytes()
        except OSError:
            return 404, f"NoSuchKey: s3://{bucket}/{key}: no such file {file}".encode()

    def _sign(self, bucket: str, key: str, expires: int) -> str:
        message = f"{bucket}\n{key}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def split_object(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket or not key:
        raise ApiError("InvalidRequest", f"{path} does not name BUCKET/KEY")
    return bucket, key
