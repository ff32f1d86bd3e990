"""Root key loading follows pgsodium's getkey contract and never shows the key."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from keystore.errors import RootKeyError
from keystore.rootkey import (
    RootKey,
    generate_key_file,
    load_from_command,
    load_from_file,
    parse_key_line,
)

KEY_HEX = bytes(range(32)).hex()


def test_command_first_line_is_the_key() -> None:
    key = load_from_command(f"echo {KEY_HEX}")
    assert key.secret == bytes(range(32))


def test_command_upper_case_hex_is_accepted() -> None:
    assert load_from_command(f"echo {KEY_HEX.upper()}").secret == bytes(range(32))


@pytest.mark.parametrize(
    "command, fragment",
    [
        ("printf '%s\\r\\n' " + KEY_HEX, "exactly 64 hex characters"),
        ("echo abc", "exactly 64 hex characters"),
        ("echo " + "g" * 64, "not hexadecimal"),
        ("true", "printed nothing"),
        ("echo " + KEY_HEX + "; exit 3", "exited with status 3"),
    ],
)
def test_bad_command_output_stops_the_start(command: str, fragment: str) -> None:
    with pytest.raises(RootKeyError) as caught:
        load_from_command(command)
    assert fragment in str(caught.value)
    assert KEY_HEX not in str(caught.value)


def test_failing_command_error_does_not_echo_its_stdout() -> None:
    with pytest.raises(RootKeyError) as caught:
        load_from_command(f"echo {KEY_HEX}; echo oops >&2; exit 1")
    assert KEY_HEX not in str(caught.value)
    assert "oops" in str(caught.value)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    path.write_text(KEY_HEX + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(RootKeyError, match="chmod 600"):
        load_from_file(path)
    os.chmod(path, 0o600)
    assert load_from_file(path).secret == bytes(range(32))


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RootKeyError, match="does not exist"):
        load_from_file(tmp_path / "nope.key")


def test_generated_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    key = generate_key_file(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_from_file(path).secret == key.secret
    with pytest.raises(RootKeyError, match="cannot be created: File exists"):
        generate_key_file(path)
    assert load_from_file(path).secret == key.secret


@pytest.mark.parametrize("mode", [0o700, 0o755])
def test_key_file_that_is_a_directory_is_a_clear_error(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "keys"
    path.mkdir(mode)
    os.chmod(path, mode)
    with pytest.raises(RootKeyError, match=f"^root key file {path} is a directory$"):
        load_from_file(path)


def test_key_file_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    parent = tmp_path / "file.key"
    parent.write_text(KEY_HEX + "\n")
    message = f"cannot be created: {parent} is not a directory$"
    for path in (parent / "x", parent / "a" / "b"):
        with pytest.raises(RootKeyError, match=message):
            generate_key_file(path)
        with pytest.raises(RootKeyError, match="cannot be read: Not a directory$"):
            load_from_file(path)
    assert parent.read_text() == KEY_HEX + "\n"


def test_repr_str_and_pickle_never_show_the_key() -> None:
    key = RootKey(bytes(range(32)))
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert KEY_HEX not in text
        assert key.fingerprint() in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_fingerprint_is_stable_and_differs_from_derived_keys() -> None:
    key = parse_key_line(KEY_HEX, "test")
    assert key.fingerprint() == RootKey(bytes(range(32))).fingerprint()
    assert len(key.fingerprint()) == 32
    assert key.fingerprint() != RootKey(bytes(32)).fingerprint()
    # derive_key(1) of this root key (vector) must not be related to it.
    assert not "fd2126ac878901c31b0eaada293687af".startswith(key.fingerprint()[:8])
