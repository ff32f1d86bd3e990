"""Replies reach the request that caused them; session messages reach the client."""

from __future__ import annotations

import asyncio

from proxy import codec
from proxy.codec import Frame, FrameReader
from proxy.router import Collect, Router, SyncReply


def _frames(*messages: codec.Message) -> list[Frame]:
    reader = FrameReader()
    reader.feed(b"".join(m.encode() for m in messages))
    return list(reader)


def test_notification_during_the_proxys_own_lookup_reaches_the_client() -> None:
    async def run() -> tuple[list[bytes], list[Frame]]:
        written: list[bytes] = []
        router = Router(written.append)
        lookup = Collect(b"C")
        router.push(lookup)
        router.push(SyncReply())
        notification = codec.NotificationResponse(7, "jobs", "42")
        notice = codec.NoticeResponse(
            (("S", "NOTICE"), ("C", "00000"), ("M", "a notice of the lookup"))
        )
        router.feed(
            _frames(
                notification,
                notice,
                codec.ParameterStatus("TimeZone", "UTC"),
                codec.CommandComplete("SELECT 1"),
                codec.ReadyForQuery("I"),
            )
        )
        return written, await lookup.done

    written, kept = asyncio.run(run())
    client = b"".join(written)
    assert codec.NotificationResponse(7, "jobs", "42").encode() in client
    assert codec.ParameterStatus("TimeZone", "UTC").encode() in client
    assert client.endswith(codec.ReadyForQuery("I").encode())
    assert [f.type for f in kept] == [ord("N"), ord("C")]  # the lookup's own
