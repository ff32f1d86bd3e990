"""TCP keepalive on the proxy's sockets (proxy.tls.keepalive)."""

from __future__ import annotations

import asyncio
import socket

from proxy import tls


async def test_keepalive_probes_a_silent_peer() -> None:
    accepted: asyncio.Future[asyncio.StreamWriter] = (
        asyncio.get_running_loop().create_future()
    )

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await asyncio.open_connection("127.0.0.1", port)
    try:
        tls.keepalive(client)
        sock = client.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 6
        (await accepted).close()
    finally:
        client.close()
        server.close()
        await server.wait_closed()
