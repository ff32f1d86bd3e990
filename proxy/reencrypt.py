"""Re-encryption of the rows an UPDATE changes the key, associated data or nonce of.

rewriter.tce_reencrypt plans it; this runs it, on the client's own connection and
as its role, before the UPDATE goes upstream: the pre-read locks and reads the
rows, each old value is decrypted under the row's old key, associated data and
nonce and encrypted under the new ones (pgsodium's stored format, as an INSERT of
the plaintext would store it), and the UPDATE takes the results from its FROM item.
The pre-read runs in the client's transaction block or, outside one, in the
implicit transaction that the UPDATE then commits: a failure anywhere changes
nothing. SECURITY: plaintext and keys stay here; only ciphertext goes upstream.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keystore.catalogue import FUNCTIONS
from keystore.derive import Env
from keystore.errors import PgsodiumError
from rewriter import builtins
from rewriter.errors import RewriteError
from rewriter.tce_reencrypt import Reencrypted, ReencryptPlan, max_rows

from .errors import SQLSTATE, ProxyError
from .lookup import Bound, lookup

if TYPE_CHECKING:
    from keystore.calls import Evaluator

    from .session import Session

# What pgsodium's TCE trigger and view call: crypto_aead_det_encrypt/decrypt by uuid.
TCE_ENCRYPT, TCE_DECRYPT = (
    next(
        f
        for f in FUNCTIONS
        if f.name == name
        and [p.type for p in f.params] == ["bytea", "bytea", "uuid", "bytea"]
    )
    for name in ("crypto_aead_det_encrypt", "crypto_aead_det_decrypt")
)
_AEAD_DET = "aead-det"


async def reencrypt(
    session: Session, plan: ReencryptPlan, pre_read: Bound
) -> list[str]:
    """Lock and read the rows (`pre_read`: plan.select and its bind values),
    re-encrypt their values: the FROM item's arrays (table oids, ctids, then each
    column's new values) as array literals."""
    # Joined: the rows' locks must hold until the client's UPDATE has run.
    rows = (await session.internal(pre_read, join=True))[0]
    if len(rows) > max_rows():
        raise ProxyError(
            SQLSTATE.PROGRAM_LIMIT_EXCEEDED,
            f"pgsodium-proxy re-encrypts at most {max_rows()} rows in one UPDATE "
            "(nothing was changed)",
            hint="Narrow the UPDATE with WHERE and run it in parts.",
        )
    found = await lookup(
        session,
        [TCE_ENCRYPT.regprocedure, TCE_DECRYPT.regprocedure],
        sorted(_keys(plan, rows)),
        0,
    )
    from .execution import CountingEvaluator, default_arg  # it imports this module

    evaluator = CountingEvaluator(
        Env(session.server.root_key.secret), found.materials, default_arg
    )
    values: list[list[str | None]] = [[] for _ in plan.columns]
    for row in rows:
        for column, out in zip(plan.columns, values, strict=True):
            out.append(_new_value(evaluator, column, row))
    return [
        _array([r[0] for r in rows]),
        _array([r[1] for r in rows]),
        *(_array(v) for v in values),
    ]


def _keys(plan: ReencryptPlan, rows: list[list[str | None]]) -> set[tuple[str, str]]:
    """Every key the rows are decrypted or encrypted with (KEY ID or KEY COLUMN):
    those of the values _new_value re-encrypts only. A NULL value stays NULL
    whatever its keys, as in pgsodium's trigger: it needs none, not even one that
    does not exist (an INSERT of NULL with it stores NULL too)."""
    keys: set[tuple[str, str]] = set()
    for column in plan.columns:
        for row in rows:
            old_key = _at(row, column.old_key, column.key_id)
            new_key = _at(row, column.new_key, column.key_id)
            if row[column.value] is not None and None not in (old_key, new_key):
                keys.update(((old_key, _AEAD_DET), (new_key, _AEAD_DET)))
    return keys


def _new_value(
    evaluator: Evaluator, column: Reencrypted, row: list[str | None]
) -> str | None:
    """The column's new stored value for one row, as text for the FROM item
    (text columns: as stored; bytea: its base64)."""
    stored = row[column.value]
    old_key = _at(row, column.old_key, column.key_id)
    new_key = _at(row, column.new_key, column.key_id)
    if stored is None or old_key is None or new_key is None:
        # NULL stays NULL; so does a value without a key, which the decrypting
        # view reads as NULL; a key column set to NULL (a bind parameter: a
        # literal NULL is planned so) stores NULL, as an INSERT with it does.
        return None
    try:
        plaintext = evaluator(
            TCE_DECRYPT,
            [
                builtins.decode(stored, "base64"),
                _bytes(row, column.old_ad),
                old_key,
                _bytes(row, column.old_nonce),
            ],
        )
        ciphertext = evaluator(
            TCE_ENCRYPT,
            [
                plaintext,
                _bytes(row, column.new_ad),
                new_key,
                _bytes(row, column.new_nonce),
            ],
        )
    except (PgsodiumError, RewriteError) as exc:
        # pgsodium's own error (22000 invalid ciphertext, P0002 for a missing key)
        # or decode's, and which value it was: the column and the row's ctid.
        exc.detail = (  # type: ignore[union-attr]
            f"pgsodium-proxy was re-encrypting {column.name} of the row at ctid "
            f"{row[1]} for its new key, associated data or nonce"
        )
        raise
    if column.type == "text":
        return str(builtins.encode(ciphertext, "base64"))
    return base64.b64encode(ciphertext).decode("ascii")


def _at(row: list[str | None], index: int | None, constant: str | None) -> Any:
    return constant if index is None else row[index]


def _bytes(row: list[str | None], index: int | None) -> bytes | None:
    """An item the pre-read sent as base64 (associated data, nonce); no item: the
    label has none (associated data '': none either)."""
    if index is None:
        return None
    value = row[index]
    return None if value is None else builtins.decode(value, "base64")


def _array(values: Sequence[str | None]) -> str:
    """An array literal of values made of base64, tid and oid characters, which
    need no escaping inside double quotes (SECURITY: nothing else goes in)."""
    items = []
    for value in values:
        if value is None:
            items.append("NULL")
            continue
        if '"' in value or "\\" in value or "'" in value:
            raise ProxyError(SQLSTATE.INTERNAL_ERROR, "pgsodium-proxy internal error")
        items.append(f'"{value}"')
    return "{" + ",".join(items) + "}"
