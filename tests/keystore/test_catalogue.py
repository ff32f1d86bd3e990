"""keystore.catalogue against pgsodium 3.1.11's function table (reference §11)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from keystore import catalogue
from keystore.catalogue import FUNCTIONS, Signature, overloads

EXPECTED = Path(__file__).parents[1] / "data" / "pgsodium-3.1.11-functions.tsv"
_VOLATILITY = {"i": "IMM", "s": "STABLE", "v": "VOL"}
_SHORT = {
    "PUBLIC": "PUBLIC",
    "pgsodium_keyiduser": "keyiduser",
    "pgsodium_keyholder": "keyholder",
    "pgsodium_keymaker": "keymaker",
}


def expected_rows() -> list[list[str]]:
    lines = EXPECTED.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if not line.startswith("#")]


def as_reference_row(sig: Signature) -> list[str]:
    """Render a signature the way the reference table prints it."""
    flags = [_VOLATILITY[sig.volatility]]
    flags += ["STRICT"] * sig.strict + ["SECDEF"] * sig.security_definer
    language = {"c": f"C {sig.c_symbol}", "aggregate": "internal"}.get(
        sig.language, sig.language
    )
    if sig.owner:
        language += f", owner {_SHORT[sig.owner]}"
    return [
        f"{sig.name}({sig.arguments})",
        sig.result,
        " ".join(flags),
        language,
        ",".join(_SHORT[role] for role in sig.execute),
    ]


def test_catalogue_has_all_177_functions_and_117_names() -> None:
    assert len(FUNCTIONS) == 177
    assert len({sig.name for sig in FUNCTIONS}) == 117
    assert len({sig.regprocedure for sig in FUNCTIONS}) == 177


@pytest.mark.parametrize(
    ("index", "row"), list(enumerate(expected_rows())), ids=lambda v: str(v)[:60]
)
def test_signature_matches_reference_row(index: int, row: list[str]) -> None:
    assert as_reference_row(FUNCTIONS[index]) == row


def test_regprocedure_lists_identity_types_only() -> None:
    (sig,) = [s for s in overloads("create_key")]
    assert sig.regprocedure == (
        "pgsodium.create_key(pgsodium.key_type,text,bytea,bytea,uuid,bytea,"
        "timestamp with time zone,text)"
    )
    det = overloads("crypto_aead_det_encrypt")
    assert [s.regprocedure for s in det] == [
        "pgsodium.crypto_aead_det_encrypt(bytea,bytea,bytea,bytea)",
        "pgsodium.crypto_aead_det_encrypt(bytea,bytea,bigint,bytea,bytea)",
        "pgsodium.crypto_aead_det_encrypt(bytea,bytea,uuid)",
        "pgsodium.crypto_aead_det_encrypt(bytea,bytea,uuid,bytea)",
    ]
    assert catalogue.BY_REGPROCEDURE[det[2].regprocedure] is det[2]


def test_overloads_accepts_qualified_names_and_unknown_names() -> None:
    assert overloads("pgsodium.crypto_auth") == overloads("crypto_auth")
    assert len(overloads("crypto_auth")) == 3
    assert overloads("no_such_function") == ()


def test_params_keep_names_types_and_defaults() -> None:
    xor = overloads("crypto_stream_xchacha20_xor")[0]
    assert xor.params == (
        catalogue.Param(None, "bytea", None),
        catalogue.Param(None, "bytea", None),
        catalogue.Param(None, "bigint", None),
        catalogue.Param("context", "bytea", "'\\x70676f736469756d'::bytea"),
    )
    derive = overloads("pgsodium_derive")[0]
    assert derive.params[2].default == "decode('pgsodium'::text, 'escape'::text)"


def test_kinds_split_crypto_keys_and_tce() -> None:
    kinds = Counter(sig.kind for sig in FUNCTIONS)
    assert kinds == {"crypto": 157, "tce": 15, "keys": 5}
    keys = {sig.name for sig in FUNCTIONS if sig.kind == "keys"}
    assert keys == {
        "create_key",
        "get_key_by_id",
        "get_key_by_name",
        "get_named_keys",
        "version",
    }


def test_uuid_variants_carry_key_type_and_both_symbols() -> None:
    uuid_variants = [sig for sig in FUNCTIONS if sig.key_variant == "uuid"]
    assert len(uuid_variants) == 29  # 25 PL/pgSQL + 4 SQL inet wrappers (§11)
    symbols = {sig.c_symbol for sig in FUNCTIONS}
    for sig in uuid_variants:
        assert sig.key_type in catalogue.KEY_TYPES
        assert sig.uuid_raw_symbol in symbols
        assert sig.uuid_id_symbol in symbols
        assert any(p.type == "uuid" for p in sig.params)
    others = [sig for sig in FUNCTIONS if sig.key_variant != "uuid"]
    assert all(sig.key_type is None and sig.uuid_raw_symbol is None for sig in others)


def test_uuid_kdf_of_a_derived_key_uses_derive_key() -> None:
    (kdf,) = [
        s for s in overloads("crypto_kdf_derive_from_key") if s.params[3].type == "uuid"
    ]
    assert kdf.key_variant == "uuid" and kdf.key_type == "kdf"
    assert kdf.uuid_raw_symbol == "pgsodium_crypto_kdf_derive_from_key"
    assert kdf.uuid_id_symbol == "pgsodium_derive"
    assert overloads("crypto_kdf_derive_from_key")[0].key_variant == "raw"


def test_id_and_raw_variants() -> None:
    ids = [sig for sig in FUNCTIONS if sig.key_variant == "id"]
    assert len(ids) == 27
    assert all(
        sig.c_symbol
        and (sig.c_symbol.endswith("_by_id") or sig.c_symbol == "pgsodium_derive")
        for sig in ids
    )
    shorthash = {s.regprocedure: s.key_variant for s in overloads("crypto_shorthash")}
    assert shorthash == {
        "pgsodium.crypto_shorthash(bytea,bigint,bytea)": "id",
        "pgsodium.crypto_shorthash(bytea,bytea)": "raw",
        "pgsodium.crypto_shorthash(bytea,uuid)": "uuid",
    }
    assert overloads("crypto_box")[0].key_variant is None


def test_every_composite_result_is_declared() -> None:
    composite = {
        sig.returns for sig in FUNCTIONS if sig.returns.startswith("pgsodium.crypto_")
    }
    assert composite <= set(catalogue.COMPOSITE_TYPES)
    assert catalogue.COMPOSITE_TYPES["pgsodium.crypto_kx_session"] == (
        ("rx", "bytea"),
        ("tx", "bytea"),
    )


def test_enum_labels_in_pgsodium_order() -> None:
    assert catalogue.KEY_STATUSES == ("default", "valid", "invalid", "expired")
    assert catalogue.KEY_TYPES[:2] == ("aead-ietf", "aead-det")
    assert catalogue.KEY_TYPES[-4:] == (
        "ipcrypt-det",
        "ipcrypt-pfx",
        "ipcrypt-nd",
        "ipcrypt-ndx",
    )
    assert len(catalogue.KEY_TYPES) == 15


def test_signatures_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FUNCTIONS[0].name = "other"  # type: ignore[misc]
    assert len(set(FUNCTIONS)) == 177
