"""The root key: loading it the way pgsodium does, and never showing it.

pgsodium's getkey contract: a command prints one line of exactly 64 hex characters
and exits 0. A key file holds the same line and must not be readable by group or
others. A bad key stops the start; no key is ever invented here.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import subprocess
from pathlib import Path

from .errors import RootKeyError

ROOT_KEY_BYTES = 32
ROOT_KEY_HEX_CHARS = 2 * ROOT_KEY_BYTES
# A keyed BLAKE2b of this fixed, non-empty message: libsodium's key derivation hashes
# the empty message, so a fingerprint can never equal a derived key.
_FINGERPRINT_MESSAGE = b"pgsodium-proxy root key fingerprint v1"
_COMMAND_TIMEOUT_SECONDS = 30


class RootKey:
    """32 secret bytes. repr/str show only the fingerprint."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != ROOT_KEY_BYTES:
            raise RootKeyError(f"the root key must be {ROOT_KEY_BYTES} bytes")
        self._secret = bytes(secret)

    @property
    def secret(self) -> bytes:
        return self._secret

    def fingerprint(self) -> str:
        """A value that names the key; no key can be recovered from it."""
        digest = hashlib.blake2b(_FINGERPRINT_MESSAGE, key=self._secret, digest_size=16)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"RootKey(fingerprint={self.fingerprint()})"

    __str__ = __repr__

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("a RootKey cannot be pickled")


def parse_key_line(text: str, source: str) -> RootKey:
    """First line, one trailing newline stripped, must be 64 hex characters."""
    line = text.split("\n", 1)[0]
    if len(line) != ROOT_KEY_HEX_CHARS:
        raise RootKeyError(
            f"{source}: invalid root key: the first line must be exactly "
            f"{ROOT_KEY_HEX_CHARS} hex characters (got {len(line)} characters)"
        )
    try:
        return RootKey(bytes.fromhex(line))
    except ValueError:
        raise RootKeyError(
            f"{source}: invalid root key: the first line is not hexadecimal"
        ) from None


def load_from_command(command: str) -> RootKey:
    """Run `command` through /bin/sh as pgsodium runs its getkey script."""
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            capture_output=True,
            timeout=_COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RootKeyError(
            f"root key command timed out after {_COMMAND_TIMEOUT_SECONDS} s"
        ) from None
    if done.returncode != 0:
        # SECURITY: stderr may be shown; stdout (where the key would be) never is.
        detail = done.stderr.decode("utf-8", "replace").strip()[:200]
        raise RootKeyError(
            f"root key command exited with status {done.returncode}"
            + (f": {detail}" if detail else "")
        )
    if not done.stdout:
        raise RootKeyError("root key command printed nothing")
    return parse_key_line(done.stdout.decode("ascii", "replace"), "root key command")


def load_from_file(path: Path) -> RootKey:
    """Read a key file; refuse one that group or others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RootKeyError(f"root key file {path} does not exist") from None
    except OSError as exc:
        raise RootKeyError(
            f"root key file {path} cannot be read: {exc.strerror}"
        ) from None
    if stat.S_ISDIR(mode):
        raise RootKeyError(f"root key file {path} is a directory")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RootKeyError(
            f"root key file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise RootKeyError(
            f"root key file {path} cannot be read: {exc.strerror}"
        ) from None
    return parse_key_line(text, str(path))


def generate_key_file(path: Path) -> RootKey:
    """Write a new random root key to `path` (0600), never over an existing file.
    Only `demo` does this."""
    key = RootKey(secrets.token_bytes(ROOT_KEY_BYTES))
    try:
        # The nearest existing ancestor: were it a regular file, mkdir would fail
        # with "File exists", which names the wrong problem.
        ancestor = next(p for p in path.parents if p.exists())
        if not ancestor.is_dir():
            raise RootKeyError(
                f"root key file {path} cannot be created: {ancestor} is not a directory"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise RootKeyError(
            f"root key file {path} cannot be created: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.secret.hex() + "\n")
    return key
