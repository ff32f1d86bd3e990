"""crypto_signcrypt_*: pgsodium's recorded transcript, ristretto255 and BLAKE2b against
their references, the 512-byte state layout, and pgsodium's checks and errors."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.errors import PgsodiumError
from keystore.primitives import signcrypt
from keystore.primitives.signcrypt import IMPLEMENTATIONS

P = "pgsodium_crypto_signcrypt"
FEW = settings(max_examples=20, deadline=None)
L = 2**252 + 27742317777372353535851937790883648493


def call(name: str, *args: Any) -> Any:
    return IMPLEMENTATIONS[f"{P}_{name}"](None, *args)


def raises(name: str, reason: str) -> Any:
    return pytest.raises(PgsodiumError, match=f"^{P}_{name}: {reason}$")


@pytest.fixture(scope="module")
def transcript(vectors: list[dict[str, Any]]) -> dict[str, bytes]:
    (meta,) = [v for v in vectors if v["sql"].startswith("-- signcrypt transcript")]
    return {
        k.removesuffix("_hex"): bytes.fromhex(v)
        for k, v in meta["result"].items()
        if k.endswith("_hex")
    }


# --- pgsodium 3.1.11's recorded transcript ------------------------------------------


def test_recorded_keypairs_are_secret_times_base(transcript: dict[str, bytes]) -> None:
    for who in ("sender", "recipient"):
        public = signcrypt.scalarmult_base(transcript[f"{who}_secret"])
        assert public == transcript[f"{who}_public"]


def test_recorded_verify_before_recovers_the_shared_key(
    vectors: list[dict[str, Any]], transcript: dict[str, bytes]
) -> None:
    (vector,) = [v for v in vectors if "crypto_signcrypt_verify_before(" in v["sql"]]
    t = transcript
    state, shared_key = call(
        "verify_before",
        t["signature"],
        b"bob",
        b"alice",
        b"additional",
        t["sender_public"],
        t["recipient_secret"],
    )
    assert shared_key.hex() == vector["result"]["shared_key_hex"]
    assert shared_key == t["sign_before_shared_key"]
    assert len(state) == 512
    assert call(
        "verify_after", state, t["signature"], t["sender_public"], t["ciphertext"]
    )


def test_recorded_verify_public_is_true(
    vectors: list[dict[str, Any]], transcript: dict[str, bytes]
) -> None:
    (vector,) = [v for v in vectors if "crypto_signcrypt_verify_public(" in v["sql"]]
    t = transcript
    result = call(
        "verify_public",
        t["signature"],
        b"bob",
        b"alice",
        b"additional",
        t["sender_public"],
        t["ciphertext"],
    )
    assert result is vector["result"] is True


# --- the signing side, byte for byte ------------------------------------------------
# pgsodium's src/signcrypt_tbsbr.c (v3.1.11) compiled against libsodium 1.0.18 with
# randombytes_buf replaced by 32 zero bytes, on the transcript's keys. Its state is the
# raw struct: BLAKE2b state, 23 padding bytes, nonce, r, challenge (unwritten), padding.

ZERO_NOISE_SHARED_KEY = (
    "d1e9733a0a80f5cb8036755c50943f2e2f5baac4fb929f51b383c8b1de4500af"
)
ZERO_NOISE_SIGNATURE = (
    "5ccc987590cb94660a4ee05f533e99df003d471edf4ef91471f83be2c7a32050"
    "ab863f3822fad8b502649e7860d77281b09786e5579171829fd6fceffe6c930e"
)
ZERO_NOISE_STATE = "".join(
    [
        "48c9bdf267e6096a3ba7ca8485ae67bb2bf894fe72f36e3cf1361d5f3af54fa5",  # h[8]
        "d182e6ad7f520e511f6c3e2b8c68059b6bbd41fbabd9831f79217e1319cde05b",
        "00" * 32,  # t[2], f[2]
        "7369676e5f6b65795ccc987590cb94660a4ee05f533e99df003d471edf4ef914",  # buf
        "71f83be2c7a3205003626f6205616c6963650a6164646974696f6e616c",
        "00" * (256 - 61),
        "3d00000000000000",  # buflen = 61
        "00",  # last_node
        "00" * 23,  # padding up to the 384-byte crypto_generichash_state
        "13a84104f43b8eb53b962a53a8bbfd54741e923b4c287fb4157897cc977e1d05",  # nonce
        "5ccc987590cb94660a4ee05f533e99df003d471edf4ef91471f83be2c7a32050",  # r
        "00" * 32,  # challenge
        "00" * 32,  # struct padding
    ]
)


def test_sign_before_and_after_match_the_c_code_byte_for_byte(
    transcript: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("secrets.token_bytes", lambda size: bytes(size))
    t = transcript
    state, shared_key = call(
        "sign_before",
        b"bob",
        b"alice",
        t["sender_secret"],
        t["recipient_public"],
        b"additional",
    )
    assert shared_key.hex() == ZERO_NOISE_SHARED_KEY
    assert state.hex() == ZERO_NOISE_STATE
    signature = call("sign_after", state, t["sender_secret"], t["ciphertext"])
    assert signature.hex() == ZERO_NOISE_SIGNATURE


keys = st.builds(lambda: signcrypt.new_keypair())
identities = st.binary(max_size=255)


@FEW
@given(keys, keys, identities, identities, identities, st.binary(max_size=700))
def test_round_trip(
    sender: tuple[bytes, bytes],
    recipient: tuple[bytes, bytes],
    sender_id: bytes,
    recipient_id: bytes,
    info: bytes,
    ciphertext: bytes,
) -> None:
    ids = (sender_id, recipient_id, info)
    state, key = call(
        "sign_before", sender_id, recipient_id, sender[1], recipient[0], info
    )
    signature = call("sign_after", state, sender[1], ciphertext)
    verify_state, verify_key = call(
        "verify_before", signature, *ids, sender[0], recipient[1]
    )
    assert verify_key == key
    assert call("verify_after", verify_state, signature, sender[0], ciphertext) is True
    assert call("verify_public", signature, *ids, sender[0], ciphertext) is True


def test_signatures_are_randomised() -> None:
    (_, sk), (rpk, _) = signcrypt.new_keypair(), signcrypt.new_keypair()
    first = call("sign_before", b"a", b"b", sk, rpk, b"")
    second = call("sign_before", b"a", b"b", sk, rpk, b"")
    assert first[1] != second[1] and first[0] != second[0]


def test_new_keypair() -> None:
    (pk1, sk1), (pk2, sk2) = call("keypair"), call("keypair")
    assert 0 < int.from_bytes(sk1, "little") < L
    assert signcrypt.scalarmult_base(sk1) == pk1 and pk1 != pk2 and sk1 != sk2


# --- ristretto255: RFC 9496 appendix A ----------------------------------------------

MULTIPLES_OF_THE_GENERATOR = [  # A.1: 0*B .. 15*B
    "0000000000000000000000000000000000000000000000000000000000000000",
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
    "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
    "94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
    "da80862773358b466ffadfe0b3293ab3d9fd53c5ea6c955358f568322daf6a57",
    "e882b131016b52c1d3337080187cf768423efccbb517bb495ab812c4160ff44e",
    "f64746d3c92b13050ed8d80236a7f0007c3b3f962f5ba793d19a601ebb1df403",
    "44f53520926ec81fbd5a387845beb7df85a96a24ece18738bdcfa6a7822a176d",
    "903293d8f2287ebe10e2374dc1a53e0bc887e592699f02d077d5263cdd55601c",
    "02622ace8f7303a31cafc63f8fc48fdc16e1c8c8d234b2f0d6685282a9076031",
    "20706fd788b2720a1ed2a5dad4952b01f413bcf0e7564de8cdc816689e2db95f",
    "bce83f8ba5dd2fa572864c24ba1810f9522bc6004afe95877ac73241cafdab42",
    "e4549ee16b9aa03099ca208c67adafcafa4c3f3e4e5303de6026e3ca8ff84460",
    "aa52e000df2e16f55fb1032fc33bc42742dad6bd5a8fc0be0167436c5948501f",
    "46376b80f409b29dc2b5f6f0c52591990896e5716f41477cd30085ab7f10301e",
    "e0c418f7c8d9c4cdd7395b93ea124f3ad99021bb681dfc3302a9d99a2e53e64e",
]
BAD_ENCODINGS = [  # A.2
    # non-canonical field encodings
    "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0100000000000000000000000000000000000000000000000000000000000080",
    # negative field elements
    "0100000000000000000000000000000000000000000000000000000000000000",
    "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
    "c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562",
    "c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78",
    "47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24",
    "f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72",
    "87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309",
    # non-square x^2
    "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
    "4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f",
    "de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b",
    "bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042",
    "2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08",
    "f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22",
    "8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731",
    "2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b",
    # negative xy value
    "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
    "a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220",
    "d483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e",
    "8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32",
    "32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b",
    "227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165",
    "5c37cc491da847cfeb9281d407efc41e15144c876e0170b499a96a22ed31e01e",
    "445425117cb8c90edcbc7c1cc0e74f747f2c1efa5630a967c64f287792a48a4b",
    # s = -1, which causes y = 0
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("n", range(16))
def test_multiples_of_the_generator(n: int) -> None:
    expected = MULTIPLES_OF_THE_GENERATOR[n]
    multiple = signcrypt.scalarmult_base(n.to_bytes(32, "little"))
    assert multiple == (None if n == 0 else bytes.fromhex(expected))
    base = bytes.fromhex(MULTIPLES_OF_THE_GENERATOR[1])
    assert signcrypt.scalarmult(n.to_bytes(32, "little"), base) == multiple
    if n > 1:  # n*B = (n-1)*B + B
        previous = bytes.fromhex(MULTIPLES_OF_THE_GENERATOR[n - 1])
        assert signcrypt.point_add(previous, base) == bytes.fromhex(expected)


@pytest.mark.parametrize("encoding", BAD_ENCODINGS)
def test_bad_encodings_are_refused(encoding: str) -> None:
    point = bytes.fromhex(encoding)
    assert signcrypt.point_add(point, bytes(32)) is None
    assert signcrypt.scalarmult((1).to_bytes(32, "little"), point) is None


def test_scalarmult_ignores_the_scalar_top_bit_and_reduces_mod_l() -> None:
    base = bytes.fromhex(MULTIPLES_OF_THE_GENERATOR[1])
    three = bytes.fromhex(MULTIPLES_OF_THE_GENERATOR[3])
    assert signcrypt.scalarmult((3 + (1 << 255)).to_bytes(32, "little"), base) == three
    assert signcrypt.scalarmult_base((3 + L).to_bytes(32, "little")) == three
    assert signcrypt.scalarmult_base(L.to_bytes(32, "little")) is None  # identity


# --- BLAKE2b with libsodium's state -------------------------------------------------

chunks = st.lists(st.binary(max_size=300), max_size=6)


@FEW
@given(chunks)
def test_blake2b_digest_matches_hashlib(parts: list[bytes]) -> None:
    hasher = signcrypt._Blake2b(64)
    for part in parts:
        hasher.update(part)
    assert hasher.digest(64) == hashlib.blake2b(b"".join(parts)).digest()


@FEW
@given(chunks)
def test_blake2b_state_is_libsodiums_byte_for_byte(parts: list[bytes]) -> None:
    # PyNaCl's bundled libsodium holds the same blake2b_state struct.
    nacl_bindings = pytest.importorskip("nacl.bindings")
    ffi = pytest.importorskip("nacl._sodium").ffi
    theirs = nacl_bindings.crypto_generichash_blake2b_init(digest_size=64)
    ours = signcrypt._Blake2b(64)
    for part in parts:
        nacl_bindings.crypto_generichash_blake2b_update(theirs, part)
        ours.update(part)
    assert bytes(ffi.buffer(theirs._statebuf))[:361] == ours.state()
    restored = signcrypt._Blake2b.from_state(ours.state())
    assert restored is not None and restored.digest(64) == ours.digest(64)


# --- pgsodium's checks and errors ---------------------------------------------------

SENDER, RECIPIENT = signcrypt.new_keypair(), signcrypt.new_keypair()
IDS = (b"bob", b"alice", b"additional")
CIPHERTEXT = b"ciphertext bytes"
STATE, SHARED_KEY = call(
    "sign_before", b"bob", b"alice", SENDER[1], RECIPIENT[0], IDS[2]
)
SIGNATURE = call("sign_after", STATE, SENDER[1], CIPHERTEXT)
VERIFY_STATE, _ = call("verify_before", SIGNATURE, *IDS, SENDER[0], RECIPIENT[1])
VALID_ARGS: dict[str, tuple[list[str], list[bytes]]] = {  # names in errors, values
    "sign_before": (
        ["sender", "recipient", "sender secretkey", "recipient publickey",
         "associated"],
        [b"bob", b"alice", SENDER[1], RECIPIENT[0], IDS[2]],
    ),
    "sign_after": (
        ["state", "sender secretkey", "ciphertext"],
        [STATE, SENDER[1], CIPHERTEXT],
    ),
    "verify_before": (
        ["signature", "sender", "recipient", "associated", "sender publickey",
         "recipient secretkey"],
        [SIGNATURE, *IDS, SENDER[0], RECIPIENT[1]],
    ),
    "verify_after": (
        ["state", "signature", "sender publickey", "ciphertext"],
        [VERIFY_STATE, SIGNATURE, SENDER[0], CIPHERTEXT],
    ),
    "verify_public": (
        ["signature", "sender", "recipient", "associated", "sender publickey",
         "ciphertext"],
        [SIGNATURE, *IDS, SENDER[0], CIPHERTEXT],
    ),
}  # fmt: skip
FIXED_SIZES = {  # argument position -> size the C code reads
    "sign_before": {2: 32, 3: 32},
    "sign_after": {0: 480, 1: 32},
    "verify_before": {0: 64, 4: 32, 5: 32},
    "verify_after": {0: 480, 1: 64, 2: 32},
    "verify_public": {0: 64, 4: 32},
}


@pytest.mark.parametrize("name", VALID_ARGS)
def test_null_arguments_are_named_in_argument_order(name: str) -> None:
    names, values = VALID_ARGS[name]
    assert call(name, *values)
    for position in range(len(values)):
        args: list[bytes | None] = list(values)
        args[position:] = [None] * (len(values) - position)
        with raises(name, f"{names[position]} cannot be NULL"):
            call(name, *args)


@pytest.mark.parametrize(
    ("name", "position"),
    [(name, position) for name, sizes in FIXED_SIZES.items() for position in sizes],
)
def test_fixed_size_arguments(name: str, position: int) -> None:
    values = list(VALID_ARGS[name][1])
    size = FIXED_SIZES[name][position]
    # Longer: the C code reads the first `size` bytes and ignores the rest.
    values[position] = values[position][:size] + b"extra"
    assert call(name, *values)
    # Shorter: the C code would read past the value; refused with the C failure.
    values[position] = values[position][: size - 1]
    with raises(name, f"{name} failed"):
        call(name, *values)


@pytest.mark.parametrize("position", range(3))
def test_identities_longer_than_255_bytes_fail(position: int) -> None:
    ids = list(IDS)
    ids[position] = bytes(256)
    with raises("sign_before", "sign_before failed"):
        call("sign_before", ids[0], ids[1], SENDER[1], RECIPIENT[0], ids[2])
    with raises("verify_before", "verify_before failed"):
        call("verify_before", SIGNATURE, *ids, SENDER[0], RECIPIENT[1])
    with raises("verify_public", "verify_public failed"):
        call("verify_public", SIGNATURE, *ids, SENDER[0], CIPHERTEXT)


@pytest.mark.parametrize("position", [0, 5, 31, 32, 40, 63])
def test_a_tampered_signature_never_verifies(position: int) -> None:
    tampered = bytearray(SIGNATURE)
    tampered[position] ^= 0x01
    with raises("verify_public", "verify_public failed"):
        call("verify_public", bytes(tampered), *IDS, SENDER[0], CIPHERTEXT)
    with raises("verify_after", "verify_after failed"):
        call("verify_after", VERIFY_STATE, bytes(tampered), SENDER[0], CIPHERTEXT)


@pytest.mark.parametrize(
    "changed",
    [
        {"ciphertext": b"other ciphertext"},
        {"ids": (b"bob", b"alice", b"Additional")},
        {"ids": (b"eve", b"alice", b"additional")},
        {"sender_pk": RECIPIENT[0]},
    ],
)
def test_a_changed_transcript_never_verifies(changed: dict[str, Any]) -> None:
    ids = changed.get("ids", IDS)
    sender_pk = changed.get("sender_pk", SENDER[0])
    ciphertext = changed.get("ciphertext", CIPHERTEXT)
    with raises("verify_public", "verify_public failed"):
        call("verify_public", SIGNATURE, *ids, sender_pk, ciphertext)


def test_a_non_canonical_s_fails_before_but_not_after() -> None:
    # verify_before/verify_public require s < L; verify_after alone does not check.
    s = int.from_bytes(SIGNATURE[32:], "little") + L
    signature = SIGNATURE[:32] + s.to_bytes(32, "little")
    with raises("verify_before", "verify_before failed"):
        call("verify_before", signature, *IDS, SENDER[0], RECIPIENT[1])
    with raises("verify_public", "verify_public failed"):
        call("verify_public", signature, *IDS, SENDER[0], CIPHERTEXT)
    assert call("verify_after", VERIFY_STATE, signature, SENDER[0], CIPHERTEXT)


@pytest.mark.parametrize("point", [bytes(32), bytes.fromhex(BAD_ENCODINGS[7])])
def test_an_unusable_public_key_fails(point: bytes) -> None:
    with raises("sign_before", "sign_before failed"):
        call("sign_before", *IDS[:2], SENDER[1], point, IDS[2])
    with raises("verify_before", "verify_before failed"):
        call("verify_before", SIGNATURE, *IDS, point, RECIPIENT[1])


def test_a_finalised_or_overfull_state_is_refused() -> None:
    finalised = bytearray(STATE)
    finalised[80:88] = b"\xff" * 8  # f[0]: libsodium will not finalise it again
    overfull = bytearray(STATE)
    overfull[352:360] = (257).to_bytes(8, "little")  # buflen past buf[256]
    for state in (finalised, overfull):
        with raises("sign_after", "sign_after failed"):
            call("sign_after", bytes(state), SENDER[1], CIPHERTEXT)
        with raises("verify_after", "verify_after failed"):
            call("verify_after", bytes(state), SIGNATURE, SENDER[0], CIPHERTEXT)


def test_the_table_holds_every_c_symbol_of_the_family() -> None:
    expected = {f"{P}_keypair", *(f"{P}_{name}" for name in VALID_ARGS)}
    assert set(IMPLEMENTATIONS) == expected
