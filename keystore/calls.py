"""Evaluate one pgsodium SQL function call, the way its SQL definition does.

STRICT functions return NULL for a NULL argument; C functions go straight to their
implementation; key-uuid variants resolve the key row first (derived: key id and
context; raw: the stored key decrypted under its parent chain) and then call the raw
or key-id C function exactly as pgsodium's PL/pgSQL wrappers do, quirks included.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from .catalogue import FUNCTIONS, Signature
from .derive import Env
from .errors import FEATURE_NOT_SUPPORTED, NO_DATA_FOUND, PgsodiumError
from .implementations import IMPLEMENTATIONS
from .keys import DerivedKey, KeyChain, RawKey, parse_material
from .primitives.aead import BINDERS
from .primitives.ipcrypt import bin_to_ip, ip_to_bin

_BY_SYMBOL: dict[str, Signature] = {
    sig.c_symbol: sig for sig in FUNCTIONS if sig.c_symbol and sig.language == "c"
}
DET_DECRYPT = "pgsodium_crypto_aead_det_decrypt"
# SQL-language helpers of the crypto_sign_update_agg aggregates.
_SIGN_AGGREGATE_STEPS = ("crypto_sign_update_agg1", "crypto_sign_update_agg2")


def inet_text(address: str) -> str:
    """inet's text output: a host address without its full-length mask."""
    parsed = ipaddress.ip_interface(address)
    full = parsed.network.max_prefixlen
    if parsed.network.prefixlen == full:
        return str(parsed.ip)
    return f"{parsed.ip}/{parsed.network.prefixlen}"


def no_rows() -> PgsodiumError:
    return PgsodiumError(NO_DATA_FOUND, "query returned no rows")


_MISSING = object()


# By id(): a frozen Signature hashes all of its fields at each lookup. The entry
# keeps its Signature, so the id stays that object's.
_UUID_POSITIONS: dict[int, tuple[Signature, int]] = {}


def _uuid_position(sig: Signature) -> int:
    """Which argument of a key-uuid function is the key uuid."""
    known = _UUID_POSITIONS.get(id(sig))
    if known is None or known[0] is not sig:
        position = next(i for i, p in enumerate(sig.params) if p.type == "uuid")
        known = _UUID_POSITIONS[id(sig)] = (sig, position)
    return known[1]


class Evaluator:
    """Calls for one statement: `materials` maps (key uuid, key_type) to the text
    pgsodium._proxy_key_material returned for it on the client's own connection."""

    def __init__(
        self,
        env: Env,
        materials: Mapping[tuple[str, str], str],
        defaults: Any,
    ) -> None:
        self.env = env
        self.materials = materials
        # Raw keys unwrapped for this statement, by key chain and level: rows that
        # use one key uuid unwrap it once (as secret as the chain's own keys).
        self._raw_keys: dict[tuple[KeyChain, int], bytes | None] = {}
        # aead-det functions bound to one derived key (key id, context).
        self._bound: dict[tuple[str, Any, Any], Callable[..., Any]] = {}
        # The same, by (function, key material), for calls whose key uuid is their
        # last argument: rows that repeat a key skip the lookup below.
        self._bound_by_material: dict[
            tuple[int, str], tuple[Signature, Callable[..., Any]]
        ] = {}
        # Callable turning a default's SQL text into its value (the rewriter's).
        self.defaults = defaults

    def __call__(self, sig: Signature, args: list[Any]) -> Any:
        if sig.strict and None in args:
            return None
        if sig.language == "sql" and sig.params and sig.params[0].type == "inet":
            return self._inet(sig, args)
        if sig.key_variant == "uuid":
            return self._by_uuid(sig, args)
        if sig.name in _SIGN_AGGREGATE_STEPS:
            return self._sign_aggregate_step(sig.name, args)
        if sig.language != "c" or sig.c_symbol not in IMPLEMENTATIONS:
            raise PgsodiumError(
                FEATURE_NOT_SUPPORTED,
                f"pgsodium-proxy does not evaluate pgsodium.{sig.name}() yet",
            )
        return IMPLEMENTATIONS[sig.c_symbol](self.env, *args)

    def bind(
        self, sig: Signature, constants: dict[int, Any]
    ) -> Callable[..., Any] | None:
        """The call with its constant arguments bound once, for values computed per
        row; the result takes the other arguments, in order, as its own. None: no
        binding."""
        if sig.key_variant == "uuid":
            return self._bind_by_material(sig, constants)
        binder = BINDERS.get(sig.c_symbol or "")
        if binder is None or sig.strict or sig.language != "c":
            return None
        bound = binder(self.env, constants)
        if bound is None:
            return None
        varying = [i for i in range(len(sig.params)) if i not in constants]
        if varying == [0, 1]:
            return bound  # type: ignore[no-any-return]
        if varying == [0]:
            additional = constants[1]
            return lambda message: bound(message, additional)
        return None

    def _bind_by_material(
        self, sig: Signature, constants: dict[int, Any]
    ) -> Callable[..., Any] | None:
        """A key-uuid aead-det call over a key uuid column, its nonce NULL (a
        decrypting view's): rows whose key was bound before (by _by_uuid, under
        `materials` as they are for that row) go straight to the bound call; every
        other row is a call. Varying: the message and key uuid, and the additional
        data unless it is fixed."""
        if _uuid_position(sig) != 2 or sig.key_type is None or 2 in constants:
            return None
        nonce_fixed_null = 3 in constants and constants[3] is None
        if not (len(sig.params) == 3 or (len(sig.params) == 4 and nonce_fixed_null)):
            return None
        if not set(constants) <= {1, 3} or 0 in constants:
            return None
        key_type, strict, known = sig.key_type, sig.strict, self._bound_by_material
        rest = [None] * (len(sig.params) - 3)  # the NULL nonce

        def by_material(message: Any, additional: Any, key_uuid: Any) -> Any:
            if key_uuid is not None and not (
                strict and (message is None or additional is None)
            ):
                material = self.materials.get((key_uuid, key_type))
                bound = known.get((id(sig), material))  # type: ignore[arg-type]
                if bound is not None and bound[0] is sig:
                    return bound[1](message, additional)
            # Not self(): a counting subclass counts the bound call once already.
            args = [message, additional, key_uuid, *rest]
            return Evaluator.__call__(self, sig, args)

        if 1 not in constants:
            return by_material
        fixed = constants[1]
        return lambda message, key_uuid: by_material(message, fixed, key_uuid)

    def _inet(self, sig: Signature, args: list[Any]) -> str:
        """pgsodium's SQL wrappers: bin2ip(f(ip2bin(host(ip)), key))::inet."""
        host = str(args[0]).split("/", 1)[0]
        sibling = next(
            s
            for s in FUNCTIONS
            if s.name == sig.name
            and [p.type for p in s.params] == ["bytea", sig.params[1].type]
        )
        result = self(sibling, [ip_to_bin(host), *args[1:]])
        return inet_text(bin_to_ip(result))

    def _sign_aggregate_step(self, name: str, args: list[Any]) -> Any:
        """pgsodium's SQL state functions of crypto_sign_update_agg:
        agg1(state, m) = crypto_sign_update(COALESCE(state, crypto_sign_init()), m);
        agg2(cur, initial, m) = crypto_sign_update(COALESCE(cur, initial), m)."""
        update = IMPLEMENTATIONS["pgsodium_crypto_sign_update"]
        if name == "crypto_sign_update_agg1":
            state, message = args
            if state is None:
                state = IMPLEMENTATIONS["pgsodium_crypto_sign_init"](self.env)
        else:
            current, initial, message = args
            state = initial if current is None else current
        return update(self.env, state, message)

    def _by_uuid(self, sig: Signature, args: list[Any]) -> Any:
        position = _uuid_position(sig)
        key_uuid = args[position]
        if key_uuid is None:
            raise no_rows()
        assert sig.key_type is not None
        material = self.materials.get((str(key_uuid), sig.key_type))
        if material is None:
            raise no_rows()
        # The key uuid last, or before a NULL nonce: the rows of one key reuse
        # the call bound below.
        last = position == 2 and all(a is None for a in args[3:])
        if last:
            known = self._bound_by_material.get((id(sig), material))
            if known is not None and known[0] is sig:
                return known[1](args[0], args[1])
        chain = parse_material(material)
        head = chain.head
        if sig.name == "crypto_kdf_derive_from_key" and isinstance(head, DerivedKey):
            # pgsodium quirk (§6): a derived kdf key ignores subkey_id and context and
            # returns derive_key(key_id, subkey_size, key_context).
            return self.env.derive(head.key_id, int(args[0]), head.context)
        replacement: list[Any]
        if isinstance(head, RawKey):
            key = self.raw_key_bytes(chain)
            symbol, replacement = sig.uuid_raw_symbol, [key]
        else:
            symbol, replacement = sig.uuid_id_symbol, [head.key_id, head.context]
        assert symbol is not None
        target = _BY_SYMBOL[symbol]
        call_args = args[:position] + replacement + args[position + 1 :]
        for param in target.params[len(call_args) :]:
            call_args.append(self.defaults(param.default))
        if symbol in BINDERS and len(call_args) == 5 and call_args[4] is None:
            # The aead-det key-id functions under one derived key, row after row:
            # bound once (its key derived and checked once), as a key id is.
            cache_key = (symbol, call_args[2], call_args[3])
            bound = self._bound.get(cache_key)
            if bound is None:
                bound = BINDERS[symbol](
                    self.env, {2: call_args[2], 3: call_args[3], 4: None}
                )
                self._bound[cache_key] = bound
            if last and position == 2:
                self._bound_by_material[(id(sig), material)] = (sig, bound)
            return bound(call_args[0], call_args[1])
        return IMPLEMENTATIONS[symbol](self.env, *call_args)

    def raw_key_bytes(self, chain: KeyChain, level: int = 0) -> bytes | None:
        """The raw key at `level`, decrypted as decrypted_key.decrypted_raw_key is:
        by the aead-det uuid function with its parent (recursively)."""
        cached = self._raw_keys.get((chain, level), _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        key = self._unwrap(chain, level)
        self._raw_keys[(chain, level)] = key
        return key

    def _unwrap(self, chain: KeyChain, level: int) -> bytes | None:
        entry = chain.entries[level]
        assert isinstance(entry, RawKey)
        if entry.parent is None or entry.encrypted is None:
            return None
        if level + 1 >= len(chain.entries):
            raise no_rows()
        parent = chain.entries[level + 1]
        additional = (
            None
            if entry.associated_data is None
            else entry.id.encode("ascii") + entry.associated_data
        )
        if isinstance(parent, DerivedKey):
            args = [parent.key_id, parent.context]
            symbol = DET_DECRYPT + "_by_id"
        else:
            parent_key = self.raw_key_bytes(chain, level + 1)
            if parent_key is None:
                # decrypted_raw_key NULL: the uuid function falls back to key id NULL.
                args, symbol = [None, None], DET_DECRYPT + "_by_id"
            else:
                args, symbol = [parent_key], DET_DECRYPT
        result = IMPLEMENTATIONS[symbol](
            self.env, entry.encrypted, additional, *args, entry.nonce
        )
        assert isinstance(result, bytes)
        return result

    def decrypt_under(
        self,
        parent: KeyChain,
        ciphertext: bytes,
        additional: bytes | None,
        nonce: bytes | None,
    ) -> bytes:
        """crypto_aead_det_decrypt(ciphertext, additional, <parent uuid>, nonce)."""
        head = parent.head
        if isinstance(head, DerivedKey):
            args: list[Any] = [head.key_id, head.context]
            symbol = DET_DECRYPT + "_by_id"
        else:
            key = self.raw_key_bytes(parent, 0)
            args, symbol = (
                ([None, None], DET_DECRYPT + "_by_id")
                if key is None
                else (
                    [key],
                    DET_DECRYPT,
                )
            )
        result = IMPLEMENTATIONS[symbol](self.env, ciphertext, additional, *args, nonce)
        assert isinstance(result, bytes)
        return result

    def encrypt_under(
        self,
        parent: KeyChain,
        message: bytes,
        additional: bytes | None,
        nonce: bytes | None,
    ) -> bytes:
        """crypto_aead_det_encrypt(message, additional, <parent uuid>, nonce)."""
        head = parent.head
        encrypt = "pgsodium_crypto_aead_det_encrypt"
        if isinstance(head, DerivedKey):
            args: list[Any] = [head.key_id, head.context]
            symbol = encrypt + "_by_id"
        else:
            key = self.raw_key_bytes(parent, 0)
            args, symbol = (
                ([None, None], encrypt + "_by_id")
                if key is None
                else (
                    [key],
                    encrypt,
                )
            )
        result = IMPLEMENTATIONS[symbol](self.env, message, additional, *args, nonce)
        assert isinstance(result, bytes)
        return result
