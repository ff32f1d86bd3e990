"""Hostile bytes: the codec fed random and mutated frames only ever answers with
frames, messages or a ProtocolViolation (the 08P01 the session sends), never with
another exception, and a good message decoded again gives what was encoded.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import codec
from proxy.codec import Frame, FrameReader, ProtocolViolation

from .test_codec import BACKEND, FRONTEND, STARTUP

# Raise for a longer hunt: FUZZ_EXAMPLES=5000 pytest tests/proxy/test_codec_fuzz.py
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FRONTEND_BYTES = [data for _, data in FRONTEND]
BACKEND_BYTES = [data for _, data in BACKEND]
BACKEND_STREAM = b"".join(BACKEND_BYTES)
STARTUP_BYTES = [data for _, data in STARTUP]


def _frames(data: bytes, cuts: list[int], **reader_options: object) -> list[Frame]:
    """Every frame the reader gives for `data` fed in pieces, until it refuses."""
    reader = FrameReader(**reader_options)  # type: ignore[arg-type]
    frames: list[Frame] = []
    start = 0
    try:
        for end in sorted({*cuts, len(data)}):
            reader.feed(data[start:end])
            start = end
            frames.extend(reader)
    except ProtocolViolation:
        pass
    return frames


def _decode_all(frames: list[Frame], decode) -> None:
    for frame in frames:
        try:
            decode(frame)
        except ProtocolViolation:
            pass


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    """Valid messages, concatenated, then bytes flipped, cut, doubled or inserted."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(corpus), min_size=1))))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert", "double"]))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += data[position : position + 16]
    return bytes(data)


cuts = st.lists(st.integers(0, 400), max_size=8)


@FUZZ
@given(st.binary(max_size=400), cuts)
def test_random_bytes_from_a_client_never_raise_anything_but_08p01(
    data: bytes, cut: list[int]
) -> None:
    frames = _frames(data, cut, limits=codec.FRONTEND_LIMITS)
    _decode_all(frames, codec.decode_frontend)


@FUZZ
@given(mutated(FRONTEND_BYTES), cuts)
def test_mutated_frontend_messages_never_raise_anything_but_08p01(
    data: bytes, cut: list[int]
) -> None:
    frames = _frames(data, cut, limits=codec.FRONTEND_LIMITS)
    _decode_all(frames, codec.decode_frontend)
    for frame in frames:
        try:
            message = codec.decode_frontend(frame)
        except ProtocolViolation:
            continue
        # What decodes is a real message: encoded again it decodes the same.
        assert codec.decode_frontend(_reframe(message.encode())) == message


@FUZZ
@given(mutated(BACKEND_BYTES), cuts)
def test_mutated_backend_messages_never_raise_anything_but_a_violation(
    data: bytes, cut: list[int]
) -> None:
    frames = _frames(data, cut)
    _decode_all(frames, codec.decode_backend)
    for frame in frames:
        if frame.type == ord("D"):
            try:
                codec.data_row_values(frame.body)
            except ProtocolViolation:
                pass


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(STARTUP_BYTES)), cuts)
def test_mutated_startup_packets_never_raise_anything_but_a_violation(
    data: bytes, cut: list[int]
) -> None:
    frames = _frames(data, cut, startup=True)
    _decode_all(frames, codec.decode_startup)


@FUZZ
@given(mutated(FRONTEND_BYTES), st.lists(st.integers(0, 400), min_size=1, max_size=8))
def test_how_hostile_bytes_are_split_never_changes_the_frames(
    data: bytes, cut: list[int]
) -> None:
    whole = _frames(data, [], limits=codec.FRONTEND_LIMITS)
    assert _frames(data, cut, limits=codec.FRONTEND_LIMITS) == whole


def _reframe(data: bytes) -> Frame:
    return Frame(data[0], data[5:], data)


def _drained(data: bytes, cuts: list[int], **reader_options: object) -> list[Frame]:
    """_frames, taking each feed's frames with drain(): up to the first refused one."""
    reader = FrameReader(**reader_options)  # type: ignore[arg-type]
    frames: list[Frame] = []
    start = 0
    try:
        for end in sorted({*cuts, len(data)}):
            reader.feed(data[start:end])
            start = end
            frames += reader.drain()
    except ProtocolViolation:
        pass
    return frames


@FUZZ
@given(mutated(BACKEND_BYTES), cuts)
def test_drained_backend_frames_are_the_frames_read_one_by_one(
    data: bytes, cut: list[int]
) -> None:
    # A refusal in a drain loses the frames of that feed before it (the upstream
    # side then closes the session); every feed before it is complete.
    one_by_one, drained = _frames(data, cut), _drained(data, cut)
    assert drained == one_by_one[: len(drained)]
    assert all(type(f.body) is bytes and type(f.raw) is bytes for f in drained)


@given(st.lists(st.integers(0, len(BACKEND_STREAM)), max_size=40))
def test_drain_of_any_split_of_a_valid_stream_gives_every_frame(
    cuts: list[int],
) -> None:
    assert _drained(BACKEND_STREAM, cuts) == _frames(BACKEND_STREAM, [])
