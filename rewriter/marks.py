"""Marks on the encryptions the proxy's own rewrites write (a decrypting view's
search, Vault's create/update), saying which function's EXECUTE privilege the
call stands for: the one pgsodium or Vault would check, never the encrypt they
run as a definer or not at all. Each is a comment just inside the call's
parentheses, new in each process, that rewriter.analyze folds away with the call.

SECURITY: a client cannot write a mark: it never goes upstream (analyze refuses a
statement where one would stay) nor into error text or logs.
"""

from __future__ import annotations

import secrets

SEARCH = f"/*search-{secrets.token_hex(16)}*/"
VAULT_CREATE = f"/*create-{secrets.token_hex(16)}*/"
VAULT_UPDATE = f"/*update-{secrets.token_hex(16)}*/"

STANDS_FOR = {
    # The decrypt a decrypting view's column calls (pgsodium's create_mask_view):
    # what pgsodium evaluates for `decrypted_c = v`.
    SEARCH: "pgsodium.crypto_aead_det_decrypt(bytea,bytea,uuid,bytea)",
    # Vault's functions, SECURITY DEFINER: their callers need nothing of pgsodium.
    VAULT_CREATE: "vault.create_secret(text,text,text,uuid)",
    VAULT_UPDATE: "vault.update_secret(uuid,text,text,text,uuid)",
}
