"""The wire format of remote mode: one binary WebSocket message = a small JSON header + an optional payload.

    message = uint32 big-endian N | N bytes of UTF-8 JSON (an object with "t", its type) | payload bytes

Client → server: ``hello`` (token, codec) → ``welcome`` (session id, model facts; payload: the motion basis
as float32); ``source`` (payload: the portrait crop, PNG) → ``source`` (id, α_src); ``step`` (optional payload:
the face crop, JPEG/WebP; a render plan) → ``result`` (α of the crop, server time; payload: the animated crop).
Every client message after ``hello`` carries the session id it was given; anything else is a protocol error
that drops that client. Images are decoded only after their header says they are the model's size.
"""

from __future__ import annotations

import io
import json
import math
import ssl
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

VERSION = 1
CODECS = ("jpeg", "webp", "png")
MAX_HEADER = 64 * 1024
MAX_VECTOR = 4096  # no α, reference or offset is longer than this
TOKEN_CLOSE = 4001  # close code: wrong token (the client exits 2)
FULL_CLOSE = 4002  # close code: the server has its maximum of clients
_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """A malformed, oversized or out-of-place message: the server drops that client with this line."""


def pack(header: dict, payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _LEN.pack(len(head)) + head + payload


def unpack(message: bytes | str) -> tuple[dict, bytes]:
    """Header and payload of one message; ProtocolError for anything that is not one."""
    if isinstance(message, str):
        raise ProtocolError("text message (the protocol is binary)")
    if len(message) < _LEN.size:
        raise ProtocolError(f"message of {len(message)} bytes is too short")
    (n,) = _LEN.unpack_from(message)
    if n > MAX_HEADER or n > len(message) - _LEN.size:
        raise ProtocolError(f"header length {n} is invalid for a message of {len(message)} bytes")
    try:
        header = json.loads(message[_LEN.size:_LEN.size + n].decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise ProtocolError("header is not an object with a type")
    return header, bytes(message[_LEN.size + n:])


def vector(value, name: str, length: int | None = None) -> np.ndarray | None:
    """A list of finite numbers from a header (None stays None) as float32 (1, M)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_VECTOR or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ProtocolError(f"{name} must be a list of finite numbers")
    if length is not None and len(value) != length:
        raise ProtocolError(f"{name} has {len(value)} values, expected {length}")
    return np.asarray(value, np.float32).reshape(1, -1)


def number(value, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ProtocolError(f"{name} must be a number in [{lo:g}, {hi:g}]")
    return float(value)


def encode_image(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90) -> bytes:
    """RGB uint8 H×W×3 → compressed bytes (PNG is lossless; quality is for JPEG/WebP)."""
    import cv2

    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)  # 40× faster than a NumPy channel flip
    if codec == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif codec == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as {codec}")
    return buf.tobytes()


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Compressed bytes → RGB uint8 (size, size, 3). The header is read first: only JPEG/WebP/PNG of exactly the
    model's size is decoded (a small message cannot claim a huge image)."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, dims = im.format, im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ProtocolError(f"payload is not an image ({type(e).__name__})") from None
    if fmt not in ("JPEG", "WEBP", "PNG"):
        raise ProtocolError(f"image format {fmt} is not allowed")
    if dims != (size, size):
        raise ProtocolError(f"image is {dims[0]}x{dims[1]}, expected {size}x{size}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape != (size, size, 3):
        raise ProtocolError("image data is corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def floats(t) -> list[float]:
    """A (1, M) tensor or array as a JSON list (float32 → float is exact, so α survives the trip bit for bit)."""
    return [float(v) for v in np.asarray(t.detach().cpu() if hasattr(t, "detach") else t, np.float32).reshape(-1)]


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1, 3, S, S) in [-1, 1] → RGB uint8 (S, S, 3), as :func:`lia_live.imaging.from_tensor` but in NumPy:
    a few small torch ops cost milliseconds each on a loaded CPU (thread pool wake-ups); NumPy does not."""
    x = t.detach().float().cpu().numpy()[0]  # (3, S, S)
    x = np.round((np.clip(x, -1, 1) + 1) * np.float32(127.5))  # as from_tensor, to the bit (cv2 rounds otherwise)
    return np.ascontiguousarray(np.clip(x, 0, 255).astype(np.uint8).transpose(1, 2, 0))


def to_model(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (S, S, 3) → (1, 3, S, S) in [-1, 1], as :func:`lia_live.imaging.to_tensor` but in NumPy."""
    x = image.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(x))[None]


def server_uri(address: str, tls: bool = False) -> str:
    """``HOST:PORT`` → ``ws://HOST:PORT`` (``wss://`` with TLS); URLs pass through."""
    if address.startswith(("ws://", "wss://")):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"«remote» must be HOST:PORT (or a ws:// / wss:// URL), got {address!r}")
    return f"{'wss' if tls else 'ws'}://{address}"


def close_reason(uri: str, code: int | None) -> str:
    if code == TOKEN_CLOSE:
        return (f"the lia-live server at {uri} refused the token (give the one 'lia-live serve' printed: "
                f"«remote_token» or $LIA_REMOTE_TOKEN)")
    if code == FULL_CLOSE:
        return f"the lia-live server at {uri} already has its maximum of clients"
    return f"the lia-live server at {uri} closed the connection (code {code})"


def client_ssl(uri: str, ca: Path | None) -> ssl.SSLContext | None:
    if not uri.startswith("wss://"):
        return None
    try:
        return ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as e:
        raise UserError(f"cannot load the certificate «remote_ca» {ca}: {e}") from None
