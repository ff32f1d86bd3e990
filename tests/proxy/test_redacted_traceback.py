"""A bug's log line shows where it happened, never the data it choked on."""

from __future__ import annotations

from proxy.errors import redacted_traceback

SECRET = "attack at dawn"


def _fail(value: str) -> None:
    int(value)  # ValueError quoting the value


def test_traceback_keeps_frames_and_type_but_not_the_message() -> None:
    try:
        try:
            _fail(SECRET)
        except ValueError as inner:
            raise KeyError(f"lookup of {SECRET}") from inner
    except KeyError as exc:
        text = redacted_traceback(exc)
    assert SECRET not in text
    assert "in _fail" not in text  # frames of the outer exception only
    assert "test_traceback_keeps_frames_and_type_but_not_the_message" in text
    assert text.endswith("KeyError (while handling ValueError)")
