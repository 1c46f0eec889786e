"""HTTP(S) GET streamed in fixed chunks, size-limited, SHA-256 checked: to a file moved into place, or to any sink."""

import binascii
import hashlib

import usocket

from iotjobs import store

CHUNK = 1024


class DownloadError(Exception):
    """The download failed: HTTP status, size limit, length or SHA-256 mismatch, or a broken link."""


def _open(https, host, port, ca, timeout_s):
    sock = usocket.socket()
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect(usocket.getaddrinfo(host, port)[0][-1])
        except OSError as e:
            raise DownloadError("cannot reach %s:%d: %s" % (host, port, e)) from None
        if https:
            import tls

            ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
            if ca is not None:
                from iotjobs.tls import read_der

                ctx.load_verify_locations(read_der(ca, "ca"))
                ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]  # missing from the ESP32 stubs
            else:
                # Without a CA the content is still checked against the SHA-256 of the job document, which came
                # over the mutually authenticated MQTT connection.
                ctx.verify_mode = tls.CERT_NONE  # type: ignore[attr-defined]
            sock = ctx.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def stream(url, sink, buf, sha256=None, size_max=None, on_progress=None, ca=None, timeout_s=20):
    """GET url (http:// or https://) into sink(piece), buf filled before each call (the last piece may be shorter);
    (size, sha256 hex).

    Nothing reaches sink when the response announces more than size_max bytes. on_progress(percent) at each 10%
    when the length is known.
    """
    https = url.startswith("https://")
    if not https and not url.startswith("http://"):
        raise DownloadError("only http:// and https:// URLs can be downloaded")
    rest = url[8 if https else 7 :]
    slash = rest.find("/")
    host, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    port = 443 if https else 80
    colon = host.rfind(":")
    if colon > 0 and "]" not in host[colon:]:
        port = int(host[colon + 1 :])
        host = host[:colon]
    if not host:
        raise DownloadError("URL has no host")
    # Never the query in messages: a presigned URL's signature is a credential.
    where = "%s%s" % (host, target.split("?", 1)[0])
    sock = _open(https, host, port, ca, timeout_s)
    try:
        # HTTP/1.0: no chunked transfer encoding to undo, and the server closes when the body ends.
        request = b"GET " + target.encode() + b" HTTP/1.0\r\nHost: " + host.encode()
        sock.write(request + b"\r\nUser-Agent: iotjobs\r\n\r\n")
        parts = sock.readline().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise DownloadError("not an HTTP response")
        code = int(parts[1])
        length = None
        while True:
            line = sock.readline()
            if not line or line == b"\r\n" or line == b"\n":
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:].strip())
        if code != 200:
            raise DownloadError("HTTP %d from %s" % (code, where))
        if size_max is not None and length is not None and length > size_max:
            raise DownloadError("%d bytes is more than the limit of %d" % (length, size_max))
        digest = hashlib.sha256()
        view = memoryview(buf)
        size = 0
        reported = 0
        while True:
            # Filled before it is passed on: a sink that writes flash blocks gets whole blocks.
            n = 0
            while n < len(buf):
                got = sock.readinto(view[n:])
                if not got:
                    break
                n += got
            if not n:
                break
            size += n
            if size_max is not None and size > size_max:
                raise DownloadError("more than the limit of %d bytes" % size_max)
            digest.update(view[:n])
            sink(view[:n])
            if on_progress is not None and length:
                percent = size * 100 // length
                if percent >= reported + 10:
                    reported = percent - percent % 10
                    on_progress(reported)
            if n < len(buf):
                break
        if length is not None and size != length:
            raise DownloadError("got %d of %d bytes from %s" % (size, length, where))
        hexdigest = binascii.hexlify(digest.digest()).decode()
        if sha256 is not None and hexdigest != sha256.lower():
            raise DownloadError("SHA-256 mismatch: expected %s, got %s" % (sha256.lower(), hexdigest))
        return size, hexdigest
    finally:
        sock.close()


def get(url, path, sha256=None, size_max=None, on_progress=None, ca=None, timeout_s=20, chunk=CHUNK):
    """Fetch url into path; returns (size, sha256 hex). on_progress(percent) at each 10% when the size is known."""
    part = path + ".part"
    done = False
    try:
        with open(part, "wb") as f:
            result = stream(url, f.write, bytearray(chunk), sha256, size_max, on_progress, ca, timeout_s)
        store.replace(part, path)
        done = True
        return result
    finally:
        if not done:
            store.remove(part)
