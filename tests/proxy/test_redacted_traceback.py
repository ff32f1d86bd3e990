"""A bug's log line shows where it happened, and an error's log line what it says,
never the data either choked on."""

from __future__ import annotations

import pytest

from proxy.errors import redacted_message, redacted_traceback

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


@pytest.mark.parametrize(
    ("message", "logged"),
    [
        (
            "syntax error at or near \"'attack at dawn'\"",
            'syntax error at or near "…"',
        ),
        # A quoted value holding quotes: nothing between the first and last quote.
        (
            'syntax error at or near "\'a" attack at dawn "b\'"',
            'syntax error at or near "…"',
        ),
        (
            'invalid input syntax for type uuid: "attack at dawn"',
            'invalid input syntax for type uuid: "…"',
        ),
        (
            'invalid byte sequence for encoding "UTF8": 0xc8 0xc9',
            'invalid byte sequence for encoding "…": 0x… 0x…',
        ),
        (
            "pgsodium_crypto_auth: invalid key",
            "pgsodium_crypto_auth: invalid key",
        ),
        (
            "invalid pgsodium label 'ENCRYPT WITH KEY ID attack at dawn': why",
            "invalid pgsodium label '…': why",
        ),
    ],
)
def test_messages_are_logged_without_the_values_they_quote(
    message: str, logged: str
) -> None:
    assert redacted_message(message) == logged
