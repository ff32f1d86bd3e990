"""TLS on both legs: the client's (SSLRequest answered 'S') and the upstream's.

The proxy terminates the client's TLS and opens its own to the upstream, so the two
legs have different certificates. SECURITY: SCRAM channel binding binds to the
certificate of the leg the client sees, which the upstream cannot check, so the
SASL mechanism SCRAM-SHA-256-PLUS is never passed on to clients (see
`strip_channel_binding`).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import socket
import ssl
import struct

from .config import ConfigError, ListenConfig, UpstreamConfig

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
AUTH_SASL = 10
CHANNEL_BINDING_MECHANISMS = frozenset({b"SCRAM-SHA-256-PLUS"})


# asyncio's TLS transport allocates (and zero-fills) a read buffer of `max_size`
# bytes per connection: 256 KiB by default, which made an idle TLS session cost
# ~290 KiB of proxy memory against ~18 KiB in plain text (bench/sessions.py). A TLS
# record carries at most 16 KiB of plaintext, so 32 KiB still reads two per call.
# XXX: a class attribute of asyncio's, not public API; it applies to every asyncio
# TLS connection in the process (the admin connection's too), harmlessly.
TLS_READ_BUFFER = 32 * 1024
asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


class UpstreamTLSError(ConnectionError):
    """The upstream refused TLS where sslmode requires it, or failed verification."""


def server_context(listen: ListenConfig) -> ssl.SSLContext | None:
    """The context for client connections, or None when TLS is off."""
    if not listen.ssl:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # PostgreSQL's default floor
    try:
        context.load_cert_chain(listen.ssl_cert_file or "", listen.ssl_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"[listen] cannot load ssl_cert_file/ssl_key_file: {exc}"
        ) from None
    return context


def upstream_context(upstream: UpstreamConfig) -> ssl.SSLContext | None:
    """The context for upstream connections, or None for sslmode disable.

    As libpq: require/prefer/allow encrypt without checking the certificate,
    verify-ca checks the chain against sslrootcert, verify-full the host name too.
    """
    mode = upstream.effective_sslmode
    if mode == "disable":
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if mode.startswith("verify"):
        try:
            context.load_verify_locations(cafile=upstream.sslrootcert)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[upstream] cannot load sslrootcert: {exc}") from None
        context.check_hostname = mode == "verify-full"
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if upstream.sslcert:
        try:
            context.load_cert_chain(upstream.sslcert, upstream.sslkey)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[upstream] cannot load sslcert/sslkey: {exc}") from None
    return context


# TCP keepalive on both legs: a peer that vanishes without closing (a network
# partition, a host that lost power) is found dead in about two minutes, so its
# session ends and the other leg is closed, instead of waiting for ever.
_KEEPALIVE = (
    ("TCP_KEEPIDLE", 60),  # seconds of silence before the first probe
    ("TCP_KEEPINTVL", 10),  # seconds between probes
    ("TCP_KEEPCNT", 6),  # unanswered probes before the connection is dropped
)


def keepalive(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in _KEEPALIVE:
        option = getattr(socket, name, None)  # Linux names; others keep defaults
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def open_upstream(
    upstream: UpstreamConfig, context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the upstream and negotiate TLS as its sslmode says.

    `allow` is treated as `prefer` (libpq would first try plain text, then TLS;
    asking for TLS first is the safer order and reaches the same servers).
    """
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    keepalive(writer)
    if context is None:
        return reader, writer
    writer.write(SSL_REQUEST)
    await writer.drain()
    answer = await reader.readexactly(1)
    if answer == b"S":
        # The upstream's answer must be the last byte before the handshake
        # (CVE-2021-23222: bytes injected in plain text before TLS).
        if len(reader._buffer):  # noqa: SLF001 - asyncio exposes no public peek
            writer.close()
            raise UpstreamTLSError("upstream sent data after its SSL answer")
        try:
            await writer.start_tls(context, server_hostname=upstream.host)
        except ssl.SSLError as exc:
            writer.close()
            raise UpstreamTLSError(f"TLS with the upstream failed: {exc}") from None
        return reader, writer
    if answer == b"N" and upstream.effective_sslmode in ("allow", "prefer"):
        return reader, writer
    writer.close()
    raise UpstreamTLSError(
        f"the upstream does not offer TLS (sslmode {upstream.effective_sslmode})"
    )


def strip_channel_binding(frame_raw: bytes) -> bytes:
    """AuthenticationSASL without the mechanisms that bind to the TLS channel.

    Body: int32 10, then mechanism names, each NUL-terminated, then a final NUL.
    """
    body = frame_raw[5:]
    (code,) = struct.unpack_from("!i", body)
    if code != AUTH_SASL:
        return frame_raw
    names = [n for n in body[4:].split(b"\0") if n]
    kept = [n for n in names if n not in CHANNEL_BINDING_MECHANISMS]
    if len(kept) == len(names):
        return frame_raw
    new_body = struct.pack("!i", AUTH_SASL) + b"".join(n + b"\0" for n in kept) + b"\0"
    return b"R" + struct.pack("!i", len(new_body) + 4) + new_body
