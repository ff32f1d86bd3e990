"""pgsodium's crypto_ipcrypt_* functions: libsodium 1.0.22 ipcrypt, draft-denis-ipcrypt.

Addresses travel as 16 bytes (IPv4 as IPv4-mapped IPv6). Every check, its order and
its error text follow pgsodium's src/ipcrypt.c; the SQL functions are STRICT, so a
NULL argument gives NULL before any check.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers import (
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from keystore.errors import data_exception

BYTES = 16  # crypto_ipcrypt_BYTES: every address is 16 bytes
KEYBYTES = 16
PFX_KEYBYTES = 32
ND_KEYBYTES = 16
ND_TWEAKBYTES = 8
ND_OUTPUTBYTES = ND_TWEAKBYTES + BYTES
NDX_KEYBYTES = 32
NDX_TWEAKBYTES = 16
NDX_OUTPUTBYTES = NDX_TWEAKBYTES + BYTES

_HALF_KEY = 16  # pfx and ndx keys are two AES-128 keys side by side
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
_ADDRESS_BITS = 128
_ADDRESS_MASK = (1 << _ADDRESS_BITS) - 1
# When both halves of a pfx or ndx key are equal, libsodium (comparing the sixth round
# keys, equal exactly when the keys are) swaps one AES key for the first half XOR 0x5a:
# the second key of pfx, the data key (first half) of ndx.
_EQUAL_HALVES_MASK = 0x5A


class _Env(Protocol):
    def derive(self, key_id: int, size: int, context: bytes) -> bytes: ...


# --- AES-128 ------------------------------------------------------------------------
# `cryptography` serves the plain block cipher. KIASU-BC (ipcrypt-nd) XORs the tweak
# into every round key, which no AES API exposes, so those rounds are spelled out.


def _ecb(key: bytes) -> CipherContext:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def _aes_encrypt(key: bytes, block: bytes) -> bytes:
    return bytes(_ecb(key).update(block))


def _aes_decrypt(key: bytes, block: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return bytes(decryptor.update(block))


def _gf_mul(a: int, b: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1  # x^8 + x^4 + x^3 + x + 1
        b >>= 1
    return product


def _make_sbox() -> list[int]:
    exp = [1]  # powers of the generator 3 of GF(2^8)*, to invert by logarithms
    for _ in range(254):
        exp.append(_gf_mul(exp[-1], 3))
    log = {value: power for power, value in enumerate(exp)}
    sbox = []
    for x in range(256):
        inverse = 0 if x == 0 else exp[(255 - log[x]) % 255]
        value = inverse
        for shift in range(1, 5):
            value ^= ((inverse << shift) | (inverse >> (8 - shift))) & 0xFF
        sbox.append(value ^ 0x63)
    return sbox


_SBOX = _make_sbox()
_INV_SBOX = [_SBOX.index(x) for x in range(256)]
_MUL = {k: [_gf_mul(x, k) for x in range(256)] for k in (2, 3, 9, 11, 13, 14)}
_ROUNDS = 10
# State bytes are column-major (byte 4*c + r is row r of column c), as FIPS-197 loads
# them; ShiftRows moves row r left by r columns.
_SHIFT_ROWS = [4 * ((i // 4 + i % 4) % 4) + i % 4 for i in range(16)]
_INV_SHIFT_ROWS = [4 * ((i // 4 - i % 4) % 4) + i % 4 for i in range(16)]


def _expand_key(key: bytes) -> list[bytes]:
    words = [list(key[i : i + 4]) for i in range(0, 16, 4)]
    rcon = 1
    for i in range(4, 4 * (_ROUNDS + 1)):
        word = list(words[i - 1])
        if i % 4 == 0:
            word = [_SBOX[b] for b in word[1:] + word[:1]]
            word[0] ^= rcon
            rcon = _gf_mul(rcon, 2)
        words.append([a ^ b for a, b in zip(words[i - 4], word, strict=True)])
    return [bytes(sum(words[4 * r : 4 * r + 4], [])) for r in range(_ROUNDS + 1)]


def _xor(a: bytes | list[int], b: bytes | list[int]) -> list[int]:
    return [x ^ y for x, y in zip(a, b, strict=True)]


def _mix_columns(s: list[int], m: tuple[int, int, int, int]) -> list[int]:
    out = []
    for c in range(0, 16, 4):
        col = s[c : c + 4]
        for r in range(4):
            out.append(
                _mul(m[0], col[r])
                ^ _mul(m[1], col[(r + 1) % 4])
                ^ _mul(m[2], col[(r + 2) % 4])
                ^ _mul(m[3], col[(r + 3) % 4])
            )
    return out


def _mul(k: int, x: int) -> int:
    return x if k == 1 else _MUL[k][x]


def _kiasu_tweak(tweak: bytes) -> bytes:
    # KIASU-BC pads the 8-byte tweak to 16: two tweak bytes then two zero bytes, x4.
    return b"".join(tweak[i : i + 2] + b"\0\0" for i in range(0, ND_TWEAKBYTES, 2))


def _kiasu_encrypt(key: bytes, tweak: bytes, block: bytes) -> bytes:
    t = _kiasu_tweak(tweak)
    round_keys = [_xor(rk, t) for rk in _expand_key(key)]
    s = _xor(block, round_keys[0])
    for r in range(1, _ROUNDS + 1):
        s = [_SBOX[s[i]] for i in _SHIFT_ROWS]
        if r != _ROUNDS:
            s = _mix_columns(s, (2, 3, 1, 1))
        s = _xor(s, round_keys[r])
    return bytes(s)


def _kiasu_decrypt(key: bytes, tweak: bytes, block: bytes) -> bytes:
    t = _kiasu_tweak(tweak)
    round_keys = [_xor(rk, t) for rk in _expand_key(key)]
    s = _xor(block, round_keys[_ROUNDS])
    for r in range(_ROUNDS - 1, -1, -1):
        s = [_INV_SBOX[s[i]] for i in _INV_SHIFT_ROWS]
        s = _xor(s, round_keys[r])
        if r != 0:
            s = _mix_columns(s, (14, 11, 13, 9))
    return bytes(s)


# --- the four ipcrypt modes ---------------------------------------------------------


def _split(key: bytes) -> tuple[bytes, bytes]:
    return key[:_HALF_KEY], key[_HALF_KEY:]


def _other_key(key: bytes) -> bytes:
    return bytes(b ^ _EQUAL_HALVES_MASK for b in key)


def encrypt(ip: bytes, key: bytes) -> bytes:
    """ipcrypt-deterministic: AES-128 of the 16-byte address."""
    return _aes_encrypt(key, ip)


def decrypt(ip: bytes, key: bytes) -> bytes:
    return _aes_decrypt(key, ip)


def _pfx(ip: bytes, key: bytes, decrypting: bool) -> bytes:
    # One pad bit per address bit, from the most significant down: the XOR of two
    # AES-128 permutations of the already-seen plaintext prefix (length-encoded by a
    # leading 1 bit). IPv4-mapped inputs keep their mapping and encrypt 32 bits only.
    k1, k2 = _split(key)
    k2 = _other_key(k1) if k1 == k2 else k2
    aes1, aes2 = _ecb(k1), _ecb(k2)
    value = int.from_bytes(ip, "big")
    if ip[:12] == _V4_MAPPED_PREFIX:
        first_bit, out, prefix = 96, 0xFFFF << 32, (1 << 96) | 0xFFFF
    else:
        first_bit, out, prefix = 0, 0, 1
    for length in range(first_bit, _ADDRESS_BITS):
        block = prefix.to_bytes(BYTES, "big")
        pad_bit = (aes1.update(block)[-1] ^ aes2.update(block)[-1]) & 1
        position = _ADDRESS_BITS - 1 - length
        in_bit = (value >> position) & 1
        out |= (in_bit ^ pad_bit) << position
        plain_bit = in_bit ^ pad_bit if decrypting else in_bit
        prefix = ((prefix << 1) & _ADDRESS_MASK) | plain_bit
    return out.to_bytes(BYTES, "big")


def pfx_encrypt(ip: bytes, key: bytes) -> bytes:
    """ipcrypt-pfx: prefix-preserving; a 32-byte key of two AES-128 keys."""
    return _pfx(ip, key, decrypting=False)


def pfx_decrypt(ip: bytes, key: bytes) -> bytes:
    return _pfx(ip, key, decrypting=True)


def nd_encrypt(ip: bytes, tweak: bytes, key: bytes) -> bytes:
    """ipcrypt-nd: KIASU-BC with an 8-byte tweak; output is tweak || ciphertext."""
    return tweak + _kiasu_encrypt(key, tweak, ip)


def nd_decrypt(ciphertext: bytes, key: bytes) -> bytes:
    tweak, block = ciphertext[:ND_TWEAKBYTES], ciphertext[ND_TWEAKBYTES:]
    return _kiasu_decrypt(key, tweak, block)


def _xex_pad(key: bytes, tweak: bytes) -> tuple[bytes, bytes]:
    data_key, tweak_key = _split(key)
    data_key = _other_key(data_key) if data_key == tweak_key else data_key
    return data_key, _aes_encrypt(tweak_key, tweak)


def ndx_encrypt(ip: bytes, tweak: bytes, key: bytes) -> bytes:
    """ipcrypt-ndx: one AES-XTS block (XEX) with a 16-byte tweak; tweak || ct."""
    data_key, pad = _xex_pad(key, tweak)
    return tweak + bytes(_xor(_aes_encrypt(data_key, bytes(_xor(ip, pad))), pad))


def ndx_decrypt(ciphertext: bytes, key: bytes) -> bytes:
    tweak, block = ciphertext[:NDX_TWEAKBYTES], ciphertext[NDX_TWEAKBYTES:]
    data_key, pad = _xex_pad(key, tweak)
    return bytes(_xor(_aes_decrypt(data_key, bytes(_xor(block, pad))), pad))


# --- sodium_ip2bin / sodium_bin2ip ---------------------------------------------------
# Ports of libsodium 1.0.22's acceptance rules (codecs.c), not of Python's ipaddress:
# e.g. a zone id "%eth0" is accepted and dropped, IPv4 octets may have leading zeros.

_PREFIX = "pgsodium_crypto_ipcrypt"  # every C symbol of this family starts so
_IP2BIN = f"{_PREFIX}_ip2bin"
_BIN2IP = f"{_PREFIX}_bin2ip"
_ZONE_CHARS = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_."
)
_IPV4_OCTETS = 4
_IPV4_OCTET_DIGITS = 3


def _parse_ipv4(text: bytes) -> bytes | None:
    parts = text.split(b".")
    if len(parts) != _IPV4_OCTETS:
        return None
    for part in parts:
        if not (0 < len(part) <= _IPV4_OCTET_DIGITS and part.isdigit()):
            return None
    values = [int(part) for part in parts]
    return bytes(values) if max(values) <= 0xFF else None


def _hex_digit(ch: int) -> int:
    char = chr(ch)
    return int(char, 16) if char in "0123456789abcdefABCDEF" else -1


def _parse_ipv6(text: bytes) -> bytes | None:
    # Groups of 1-4 hex digits; one "::" run; an IPv4 tail ends the address.
    out = bytearray(BYTES)
    filled, gap = 0, None  # bytes written so far; where "::" stood
    pos, token, value, digits = 0, 0, 0, 0
    if text.startswith(b":"):
        if not text.startswith(b"::"):
            return None
        gap, pos, token = 0, 2, 2
    while pos < len(text):
        ch = text[pos]
        if ch == ord(":"):
            pos += 1
            if digits == 0:
                if gap is not None:
                    return None
                gap, token = filled, pos
                continue
            if filled + 2 > BYTES or pos >= len(text):
                return None
            out[filled : filled + 2] = value.to_bytes(2, "big")
            filled, value, digits, token = filled + 2, 0, 0, pos
            continue
        if ch == ord("."):
            tail = _parse_ipv4(text[token:])
            if filled + _IPV4_OCTETS > BYTES or tail is None:
                return None
            out[filled : filled + _IPV4_OCTETS] = tail
            filled, digits = filled + _IPV4_OCTETS, 0
            break
        hex_value = _hex_digit(ch)
        if hex_value < 0 or digits >= 4:
            return None
        value, digits, pos = (value << 4) | hex_value, digits + 1, pos + 1
    if digits:
        if filled + 2 > BYTES:
            return None
        out[filled : filled + 2] = value.to_bytes(2, "big")
        filled += 2
    if gap is not None:
        if filled == BYTES:
            return None
        moved = bytes(out[gap:filled])
        out[gap:] = bytes(BYTES - gap - len(moved)) + moved
        filled = BYTES
    return bytes(out) if filled == BYTES else None


def _ip2bin(text: str) -> bytes | None:
    raw = text.encode("utf-8", "replace").split(b"\0", 1)[0]
    address, percent, zone = raw.partition(b"%")
    if percent and (not zone or not _ZONE_CHARS.issuperset(zone)):
        return None
    if b":" in address:
        return _parse_ipv6(address)
    if percent:
        return None  # a zone id only belongs to an IPv6 address
    ipv4 = _parse_ipv4(address)
    return None if ipv4 is None else _V4_MAPPED_PREFIX + ipv4


def _bin2ip(binary: bytes) -> str:
    if binary[:12] == _V4_MAPPED_PREFIX:
        return ".".join(str(octet) for octet in binary[12:])
    words = [int.from_bytes(binary[i : i + 2], "big") for i in range(0, BYTES, 2)]
    best_start, best_len, run_start, run_len = -1, 0, -1, 0
    for i, word in enumerate([*words, 1]):  # the sentinel closes a trailing run
        if word == 0:
            run_start, run_len = (i, 1) if run_len == 0 else (run_start, run_len + 1)
            continue
        if run_len > best_len:
            best_start, best_len = run_start, run_len
        run_len = 0
    if best_len < 2:  # a single zero word is printed, never shortened to "::"
        return ":".join(f"{word:x}" for word in words)
    head = ":".join(f"{word:x}" for word in words[:best_start])
    tail = ":".join(f"{word:x}" for word in words[best_start + best_len :])
    return f"{head}::{tail}"


def ip_to_bin(ip: str) -> bytes:
    """sodium_ip2bin, for the SQL inet wrappers; errors as crypto_ipcrypt_ip2bin's."""
    binary = _ip2bin(ip)
    if binary is None:
        raise data_exception(_IP2BIN, "invalid IP address")
    return binary


def bin_to_ip(binary: bytes) -> str:
    """sodium_bin2ip, for the SQL inet wrappers; errors as crypto_ipcrypt_bin2ip's."""
    if len(binary) != BYTES:
        raise data_exception(_BIN2IP, "input must be 16 bytes")
    return _bin2ip(binary)


# --- pgsodium's C functions -----------------------------------------------------------

Implementation = Callable[..., Any]


@dataclass(frozen=True)
class _Mode:
    name: str  # the infix of the C symbols: "", "_pfx", "_nd", "_ndx"
    key_bytes: int
    tweak_bytes: int  # 0: the mode takes no tweak
    encrypt: Callable[[bytes, bytes, bytes], bytes]  # (ip, tweak, key)
    decrypt: Callable[[bytes, bytes], bytes]  # (ciphertext, key)

    @property
    def output_bytes(self) -> int:
        return self.tweak_bytes + BYTES

    @property
    def decrypt_input(self) -> str:
        # pgsodium names a wrong-sized decrypt input "input" for the 16-byte modes
        # and "ciphertext" for the modes that prepend their tweak.
        return "ciphertext" if self.tweak_bytes else "input"


def _untweaked(cipher: Callable[[bytes, bytes], bytes]) -> Callable[..., bytes]:
    return lambda ip, _tweak, key: cipher(ip, key)


_MODES = (
    _Mode("", KEYBYTES, 0, _untweaked(encrypt), decrypt),
    _Mode("_pfx", PFX_KEYBYTES, 0, _untweaked(pfx_encrypt), pfx_decrypt),
    _Mode("_nd", ND_KEYBYTES, ND_TWEAKBYTES, nd_encrypt, nd_decrypt),
    _Mode("_ndx", NDX_KEYBYTES, NDX_TWEAKBYTES, ndx_encrypt, ndx_decrypt),
)


def _check(symbol: str, value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise data_exception(symbol, f"invalid {what}")


def _plaintext(
    symbol: str, mode: _Mode, args: tuple[bytes, ...]
) -> tuple[bytes, bytes]:
    ip, tweak = (args[0], args[1]) if mode.tweak_bytes else (args[0], b"")
    _check(symbol, ip, BYTES, "input")
    if mode.tweak_bytes:
        _check(symbol, tweak, mode.tweak_bytes, "tweak")
    return ip, tweak


def _encrypt_impl(mode: _Mode) -> tuple[str, Implementation]:
    symbol = f"{_PREFIX}{mode.name}_encrypt"

    def impl(env: _Env, *args: Any) -> bytes | None:
        if None in args:
            return None  # STRICT
        ip, tweak = _plaintext(symbol, mode, args[:-1])
        _check(symbol, args[-1], mode.key_bytes, "key")
        return mode.encrypt(ip, tweak, args[-1])

    return symbol, impl


def _encrypt_by_id_impl(mode: _Mode) -> tuple[str, Implementation]:
    symbol = f"{_PREFIX}{mode.name}_encrypt_by_id"

    def impl(env: _Env, *args: Any) -> bytes | None:
        if None in args:
            return None  # STRICT
        ip, tweak = _plaintext(symbol, mode, args[:-2])
        key = env.derive(args[-2], mode.key_bytes, args[-1])
        return mode.encrypt(ip, tweak, key)

    return symbol, impl


def _decrypt_impl(mode: _Mode) -> tuple[str, Implementation]:
    symbol = f"{_PREFIX}{mode.name}_decrypt"

    def impl(env: _Env, data: bytes | None, key: bytes | None) -> bytes | None:
        if data is None or key is None:
            return None  # STRICT
        _check(symbol, data, mode.output_bytes, mode.decrypt_input)
        _check(symbol, key, mode.key_bytes, "key")
        return mode.decrypt(data, key)

    return symbol, impl


def _decrypt_by_id_impl(mode: _Mode) -> tuple[str, Implementation]:
    symbol = f"{_PREFIX}{mode.name}_decrypt_by_id"

    def impl(
        env: _Env, data: bytes | None, key_id: int | None, context: bytes | None
    ) -> bytes | None:
        if data is None or key_id is None or context is None:
            return None  # STRICT
        _check(symbol, data, mode.output_bytes, mode.decrypt_input)
        return mode.decrypt(data, env.derive(key_id, mode.key_bytes, context))

    return symbol, impl


def _random_impl(symbol: str, size: int) -> tuple[str, Implementation]:
    def impl(env: _Env) -> bytes:
        return secrets.token_bytes(size)

    return symbol, impl


def _ip2bin_impl(env: _Env, ip: str | None) -> bytes | None:
    return None if ip is None else ip_to_bin(ip)  # STRICT


def _bin2ip_impl(env: _Env, binary: bytes | None) -> str | None:
    return None if binary is None else bin_to_ip(binary)  # STRICT


_MAKERS = (_encrypt_impl, _encrypt_by_id_impl, _decrypt_impl, _decrypt_by_id_impl)


def _table() -> dict[str, Implementation]:
    table = dict([_random_impl(f"{_PREFIX}_nd_tweakgen", ND_TWEAKBYTES)])
    table.update([_random_impl(f"{_PREFIX}_ndx_tweakgen", NDX_TWEAKBYTES)])
    table.update({_IP2BIN: _ip2bin_impl, _BIN2IP: _bin2ip_impl})
    for mode in _MODES:
        table.update([_random_impl(f"{_PREFIX}{mode.name}_keygen", mode.key_bytes)])
        for make in _MAKERS:
            table.update([make(mode)])
    return table


IMPLEMENTATIONS: dict[str, Implementation] = _table()
