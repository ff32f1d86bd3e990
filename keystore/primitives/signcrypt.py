"""pgsodium's crypto_signcrypt_*: the "tbsbr" signcryption of its src/signcrypt_tbsbr.c.

ristretto255 and BLAKE2b, computed here in Python; the state handed to SQL between the
"before" and "after" calls keeps the C struct's byte layout (libsodium's BLAKE2b state
first), so states move freely between this module and a real pgsodium.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Callable
from typing import Any

from keystore.errors import data_exception

PUBLICKEYBYTES = 32
SECRETKEYBYTES = 32
SHAREDBYTES = 32
SIGNBYTES = 64  # r (a ristretto255 point) || s (a scalar)
STATEBYTES = 512
# sender id, recipient id and info are each prefixed with a one-byte length.
MAX_ID_BYTES = 0xFF

_POINT_BYTES = 32
_SCALAR_BYTES = 32
_WIDE_SCALAR_BYTES = 64  # hashed to a scalar by reduction mod L
_UINT64 = (1 << 64) - 1

# SECURITY: Python integers are not constant-time; secret scalars meet variable-time
# arithmetic here. XXX: timing side channel on the proxy host, for signcrypt keys only.

# --- ristretto255 (RFC 9496) over edwards25519 -------------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # the group order
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_INVSQRT_A_MINUS_D = (
    54469307008909316920995813868745141605393597292927456921205312896311721017578
)
_CLEAR_TOP_BIT = (1 << 255) - 1  # libsodium's scalarmult ignores the scalar's top bit

Point = tuple[int, int, int, int]  # extended coordinates (X : Y : Z : T)

_IDENTITY: Point = (0, 1, 1, 0)
_BASE_X = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BASE_Y = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_BASE: Point = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % _P)


def _is_negative(x: int) -> int:
    return x % _P & 1


def _abs(x: int) -> int:
    return -x % _P if _is_negative(x) else x % _P


def _sqrt_ratio_m1(u: int, v: int) -> tuple[bool, int]:
    r = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    check = v * r * r % _P
    correct, flipped = check == u % _P, check == -u % _P
    if flipped or check == -u * _SQRT_M1 % _P:
        r = r * _SQRT_M1 % _P
    return correct or flipped, _abs(r)


def _decode(encoding: bytes) -> Point | None:
    s = int.from_bytes(encoding, "little")
    if s >= _P or _is_negative(s):  # also rejects a set top bit: s >= 2^255 > p
        return None
    ss = s * s % _P
    u1, u2 = (1 - ss) % _P, (1 + ss) % _P
    u2_sqr = u2 * u2 % _P
    v = (-_D * u1 * u1 - u2_sqr) % _P
    was_square, invsqrt = _sqrt_ratio_m1(1, v * u2_sqr)
    den_x = invsqrt * u2 % _P
    den_y = invsqrt * den_x * v % _P
    x = _abs(2 * s * den_x)
    y = u1 * den_y % _P
    t = x * y % _P
    if not was_square or _is_negative(t) or y == 0:
        return None
    return (x, y, 1, t)


def _encode(point: Point) -> bytes:
    x0, y0, z0, t0 = point
    u1 = (z0 + y0) * (z0 - y0) % _P
    u2 = x0 * y0 % _P
    _, invsqrt = _sqrt_ratio_m1(1, u1 * u2 * u2)
    den1, den2 = invsqrt * u1 % _P, invsqrt * u2 % _P
    z_inv = den1 * den2 * t0 % _P
    if _is_negative(t0 * z_inv):
        x, y = y0 * _SQRT_M1 % _P, x0 * _SQRT_M1 % _P
        den_inv = den1 * _INVSQRT_A_MINUS_D % _P
    else:
        x, y, den_inv = x0, y0, den2
    if _is_negative(x * z_inv):
        y = -y % _P
    return _abs(den_inv * (z0 - y)).to_bytes(_POINT_BYTES, "little")


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * _D * t1 * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p: Point) -> Point:
    x1, y1, z1, _ = p
    a, b = x1 * x1 % _P, y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    e = ((x1 + y1) * (x1 + y1) - a - b) % _P
    g = b - a
    f, h = g - c, -a - b
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int, point: Point) -> Point:
    # Decoded points lie in 2E and encodings ignore E[4], so reducing mod L is exact.
    result = _IDENTITY
    for bit in bin(scalar % _L)[2:]:
        result = _double(result)
        if bit == "1":
            result = _add(result, point)
    return result


def _scalar(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def scalarmult_base(scalar: bytes) -> bytes | None:
    """crypto_scalarmult_ristretto255_base: None where libsodium returns -1."""
    encoding = _encode(_multiply(_scalar(scalar) & _CLEAR_TOP_BIT, _BASE))
    return None if encoding == bytes(_POINT_BYTES) else encoding


def scalarmult(scalar: bytes, point: bytes) -> bytes | None:
    """crypto_scalarmult_ristretto255: None for a bad point or an identity result."""
    decoded = _decode(point)
    if decoded is None:
        return None
    encoding = _encode(_multiply(_scalar(scalar) & _CLEAR_TOP_BIT, decoded))
    return None if encoding == bytes(_POINT_BYTES) else encoding


def point_add(p: bytes, q: bytes) -> bytes | None:
    """crypto_core_ristretto255_add: None where libsodium returns -1."""
    p_point, q_point = _decode(p), _decode(q)
    if p_point is None or q_point is None:
        return None
    return _encode(_add(p_point, q_point))


def _scalar_bytes(value: int) -> bytes:
    return (value % _L).to_bytes(_SCALAR_BYTES, "little")


# --- BLAKE2b-512 with libsodium's exportable state -----------------------------------
# The SQL state carries libsodium's blake2b_state verbatim: h[8], t[2], f[2] (uint64
# LE), buf[256], buflen (size_t, 8 bytes on the 64-bit reference build), last_node.
# libsodium buffers lazily (it keeps up to two blocks and leaves stale bytes behind the
# live ones); that is reproduced so that states match byte for byte.

_HASH_STATE = struct.Struct("<8Q2Q2Q256sQB")  # 361 bytes
_BLOCK = 128
_IV = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)  # fmt: skip
_SIGMA = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3),
    (11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4),
    (7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8),
    (9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13),
    (2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9),
    (12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11),
    (13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10),
    (6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5),
    (10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0),
)
_COLUMNS_AND_DIAGONALS = (
    (0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
    (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14),
)  # fmt: skip


def _rotr(x: int, n: int) -> int:
    return (x >> n) | (x << (64 - n)) & _UINT64


def _mix(v: list[int], lanes: tuple[int, int, int, int], x: int, y: int) -> None:
    a, b, c, d = lanes
    v[a] = (v[a] + v[b] + x) & _UINT64
    v[d] = _rotr(v[d] ^ v[a], 32)
    v[c] = (v[c] + v[d]) & _UINT64
    v[b] = _rotr(v[b] ^ v[c], 24)
    v[a] = (v[a] + v[b] + y) & _UINT64
    v[d] = _rotr(v[d] ^ v[a], 16)
    v[c] = (v[c] + v[d]) & _UINT64
    v[b] = _rotr(v[b] ^ v[c], 63)


class _Blake2b:
    """libsodium's blake2b_state: unkeyed, no salt or personal, as tbsbr uses it."""

    def __init__(self, digest_size: int) -> None:
        # Parameter block: digest length, key length 0, fanout 1, depth 1.
        self.h = [_IV[0] ^ 0x01010000 ^ digest_size, *_IV[1:]]
        self.t0 = self.t1 = self.f0 = self.f1 = 0
        self.buf = bytearray(2 * _BLOCK)
        self.buflen = 0
        self.last_node = 0

    @classmethod
    def from_state(cls, raw: bytes) -> _Blake2b | None:
        fields = _HASH_STATE.unpack_from(raw)
        hasher = cls(_WIDE_SCALAR_BYTES)
        hasher.h = list(fields[0:8])
        hasher.t0, hasher.t1, hasher.f0, hasher.f1 = fields[8:12]
        hasher.buf = bytearray(fields[12])
        hasher.buflen, hasher.last_node = fields[13], fields[14]
        # XXX: libsodium would overflow its buffer on a longer buflen; refuse instead.
        return hasher if hasher.buflen <= 2 * _BLOCK else None

    def state(self) -> bytes:
        t_and_f = (self.t0, self.t1, self.f0, self.f1)
        return _HASH_STATE.pack(
            *self.h, *t_and_f, bytes(self.buf), self.buflen, self.last_node
        )

    def _compress(self, increment: int) -> None:
        total = (self.t1 << 64 | self.t0) + increment
        self.t0, self.t1 = total & _UINT64, (total >> 64) & _UINT64
        m = struct.unpack_from("<16Q", self.buf)
        v = [*self.h, *_IV]
        v[12] ^= self.t0
        v[13] ^= self.t1
        v[14] ^= self.f0
        v[15] ^= self.f1
        for r in range(12):
            s = _SIGMA[r % 10]
            for i, lanes in enumerate(_COLUMNS_AND_DIAGONALS):
                _mix(v, lanes, m[s[2 * i]], m[s[2 * i + 1]])
        self.h = [self.h[i] ^ v[i] ^ v[i + 8] for i in range(8)]

    def update(self, data: bytes) -> None:
        while data:
            fill = 2 * _BLOCK - self.buflen
            if len(data) <= fill:  # lazy: never compress a block that could be last
                self.buf[self.buflen : self.buflen + len(data)] = data
                self.buflen += len(data)
                return
            self.buf[self.buflen :] = data[:fill]
            self._compress(_BLOCK)
            self.buf[:_BLOCK] = self.buf[_BLOCK:]
            self.buflen = _BLOCK
            data = data[fill:]

    def digest(self, size: int) -> bytes | None:
        if self.f0:
            return None  # libsodium will not finalise twice (tbsbr ignores that)
        if self.buflen > _BLOCK:
            self._compress(_BLOCK)
            self.buflen -= _BLOCK
            self.buf[: self.buflen] = self.buf[_BLOCK : _BLOCK + self.buflen]
        self.f0 = _UINT64
        if self.last_node:
            self.f1 = _UINT64
        self.buf[self.buflen :] = bytes(2 * _BLOCK - self.buflen)
        self._compress(self.buflen)
        return struct.pack("<8Q", *self.h)[:size]


# --- tbsbr --------------------------------------------------------------------------
# The state struct: BLAKE2b state (in 384 bytes), nonce, r, challenge; 512 with its
# alignment padding. Bytes the C code leaves unwritten (state padding, and nonce, r,
# challenge after verify_before) hold whatever palloc returned; they are zero here.

_HASH_STATE_BYTES = 384
_NONCE_AT = _HASH_STATE_BYTES
_R_AT = _NONCE_AT + _SCALAR_BYTES
_STATE_USED = _R_AT + _POINT_BYTES + _SCALAR_BYTES  # the C code never reads past this
_NONCE_DOMAIN, _SHARED_DOMAIN, _SIGN_DOMAIN = b"nonce", b"shared_key", b"sign_key"


def _identities(*values: bytes) -> bytes:
    return b"".join(bytes([len(v)]) + v for v in values)


def _shared_key(kp: bytes, ids: bytes) -> bytes:
    return hashlib.blake2b(_SHARED_DOMAIN + kp + ids, digest_size=SHAREDBYTES).digest()


def _sign_key_hash(r: bytes, ids: bytes) -> _Blake2b:
    hasher = _Blake2b(_WIDE_SCALAR_BYTES)
    hasher.update(_SIGN_DOMAIN + r + ids)
    return hasher


def _state(hasher: _Blake2b, nonce: bytes = b"", r: bytes = b"") -> bytes:
    state = bytearray(STATEBYTES)
    hash_state = hasher.state()
    state[: len(hash_state)] = hash_state
    state[_NONCE_AT : _NONCE_AT + len(nonce)] = nonce
    state[_R_AT : _R_AT + len(r)] = r
    return bytes(state)


def _too_long(*identities: bytes) -> bool:
    return any(len(value) > MAX_ID_BYTES for value in identities)


def sign_before(
    sender: bytes, recipient: bytes, sender_sk: bytes, recipient_pk: bytes, info: bytes
) -> tuple[bytes, bytes] | None:
    """(state, shared key), or None where the C code returns -1.

    Arguments in pgsodium's SQL order (the C function takes info before the keys).
    """
    if _too_long(sender, recipient, info):
        return None
    noise = secrets.token_bytes(32)  # makes the nonce, hence r, unpredictable
    seed = _NONCE_DOMAIN + sender_sk + recipient_pk + noise  # no message: pgsodium
    nonce = hashlib.blake2b(seed, digest_size=_WIDE_SCALAR_BYTES).digest()
    nonce = _scalar_bytes(_scalar(nonce))
    r = scalarmult_base(nonce)
    if r is None:
        return None
    ks = _scalar_bytes(_scalar(nonce) + _scalar(r) * _scalar(sender_sk))
    kp = scalarmult(ks, recipient_pk)
    if kp is None:
        return None
    ids = _identities(sender, recipient, info)
    return _state(_sign_key_hash(r, ids), nonce, r), _shared_key(kp, ids)


def sign_after(state: bytes, sender_sk: bytes, ciphertext: bytes) -> bytes | None:
    hasher = _Blake2b.from_state(state)
    if hasher is None:
        return None
    hasher.update(ciphertext)
    # XXX: on an already finalised state the C code signs with an uninitialised
    # challenge (garbage signature); this refuses instead.
    challenge = hasher.digest(_WIDE_SCALAR_BYTES)
    if challenge is None:
        return None
    nonce, r = state[_NONCE_AT:_R_AT], state[_R_AT : _R_AT + _POINT_BYTES]
    s = _scalar(challenge) * _scalar(sender_sk) - _scalar(nonce)
    return r + _scalar_bytes(s)


def _canonical(s: bytes) -> bool:
    return _scalar(s) < _L


def verify_before(
    signature: bytes,
    sender: bytes,
    recipient: bytes,
    info: bytes,
    sender_pk: bytes,
    recipient_sk: bytes,
) -> tuple[bytes, bytes] | None:
    r, s = signature[:_POINT_BYTES], signature[_POINT_BYTES:]
    if _too_long(sender, recipient, info) or not _canonical(s):
        return None
    kp = scalarmult(r, sender_pk)
    if kp is None:
        return None
    kp = point_add(r, kp) or kp  # the C code ignores a failed add (invalid r)
    kp = scalarmult(recipient_sk, kp)
    if kp is None:
        return None
    ids = _identities(sender, recipient, info)
    return _state(_sign_key_hash(r, ids)), _shared_key(kp, ids)


def verify_after(
    state: bytes, signature: bytes, sender_pk: bytes, ciphertext: bytes
) -> bool:
    hasher = _Blake2b.from_state(state)
    return hasher is not None and _verify(hasher, signature, sender_pk, ciphertext)


def _verify(
    hasher: _Blake2b, signature: bytes, sender_pk: bytes, ciphertext: bytes
) -> bool:
    hasher.update(ciphertext)
    challenge = hasher.digest(_WIDE_SCALAR_BYTES)
    if challenge is None:
        return False
    r, s = signature[:_POINT_BYTES], signature[_POINT_BYTES:]
    # s*B + r == challenge*pk; here s is not checked to be canonical, and an invalid
    # r (failed add, result ignored by the C code) leaves s*B alone.
    expected = scalarmult_base(s) or bytes(_POINT_BYTES)
    expected = point_add(expected, r) or expected
    found = scalarmult(_scalar_bytes(_scalar(challenge)), sender_pk)
    return found is not None and secrets.compare_digest(expected, found)


def verify_public(
    signature: bytes,
    sender: bytes,
    recipient: bytes,
    info: bytes,
    sender_pk: bytes,
    ciphertext: bytes,
) -> bool:
    r, s = signature[:_POINT_BYTES], signature[_POINT_BYTES:]
    if _too_long(sender, recipient, info) or not _canonical(s):
        return False
    ids = _identities(sender, recipient, info)
    return _verify(_sign_key_hash(r, ids), signature, sender_pk, ciphertext)


def new_keypair() -> tuple[bytes, bytes]:
    """(public, secret): a uniform scalar in [1, L) and its multiple of the base."""
    scalar = 1 + secrets.randbelow(_L - 1)  # crypto_core_ristretto255_scalar_random
    return _encode(_multiply(scalar, _BASE)), _scalar_bytes(scalar)


# --- pgsodium's C functions -----------------------------------------------------------
# pgsodium checks only NULLs; keys, signature and state are read at their C sizes
# whatever the bytea length. A longer value is therefore cut to that size, as the C code
# reads it. XXX: a shorter one makes the C code read past the value (undefined); it is
# refused here with the function's own failure error.

Implementation = Callable[..., Any]
_PREFIX = "pgsodium_crypto_signcrypt"
_ARGUMENTS = {  # per function: pgsodium's name of each argument, and its C size
    "sign_before": (
        ("sender", None),
        ("recipient", None),
        ("sender secretkey", SECRETKEYBYTES),
        ("recipient publickey", PUBLICKEYBYTES),
        ("associated", None),
    ),
    "sign_after": (
        ("state", _STATE_USED),
        ("sender secretkey", SECRETKEYBYTES),
        ("ciphertext", None),
    ),
    "verify_before": (
        ("signature", SIGNBYTES),
        ("sender", None),
        ("recipient", None),
        ("associated", None),
        ("sender publickey", PUBLICKEYBYTES),
        ("recipient secretkey", SECRETKEYBYTES),
    ),
    "verify_after": (
        ("state", _STATE_USED),
        ("signature", SIGNBYTES),
        ("sender publickey", PUBLICKEYBYTES),
        ("ciphertext", None),
    ),
    "verify_public": (
        ("signature", SIGNBYTES),
        ("sender", None),
        ("recipient", None),
        ("associated", None),
        ("sender publickey", PUBLICKEYBYTES),
        ("ciphertext", None),
    ),
}


def _c_function(operation: str, run: Callable[..., Any]) -> Implementation:
    symbol, failure = f"{_PREFIX}_{operation}", f"{operation} failed"
    arguments = _ARGUMENTS[operation]

    def impl(env: object, *args: bytes | None) -> Any:
        for (name, _), value in zip(arguments, args, strict=True):
            if value is None:
                raise data_exception(symbol, f"{name} cannot be NULL")
        values = [v for v in args if v is not None]  # every one, after the check
        for i, (_, size) in enumerate(arguments):
            if size is not None:
                if len(values[i]) < size:
                    raise data_exception(symbol, failure)
                values[i] = values[i][:size]
        result = run(*values)
        if result is None or result is False:
            # verify_after/verify_public return true or raise, never false.
            raise data_exception(symbol, failure)
        return result

    return impl


IMPLEMENTATIONS: dict[str, Implementation] = {
    f"{_PREFIX}_keypair": lambda env: new_keypair(),
    f"{_PREFIX}_sign_before": _c_function("sign_before", sign_before),
    f"{_PREFIX}_sign_after": _c_function("sign_after", sign_after),
    f"{_PREFIX}_verify_before": _c_function("verify_before", verify_before),
    f"{_PREFIX}_verify_after": _c_function("verify_after", verify_after),
    f"{_PREFIX}_verify_public": _c_function("verify_public", verify_public),
}
