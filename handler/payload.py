"""Getting the uploaded bytes out of one TorchServe request, whatever way the client sent them."""

from neuroscan.imaging import ImageDecodeError

# Multipart field names we accept, in order of preference; a raw body arrives as "body".
FIELDS: tuple[str, ...] = ("file", "image", "data", "body")


def request_bytes(request: dict) -> bytes:
    """The upload in ``request``: a raw body or the first multipart file field.

    TorchServe turns JSON and text bodies into dicts and strings; neither is an image.
    """
    for name in FIELDS:
        if name in request:
            return _as_bytes(request[name])
    for value in request.values():
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
    raise ImageDecodeError("empty_input", "No file in the request: send the image as the body or a 'file' field.")


def _as_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if value is None or value == "":
        return b""
    raise ImageDecodeError(
        "unsupported_type", "The request holds text or JSON, not an image file: send the image bytes."
    )
