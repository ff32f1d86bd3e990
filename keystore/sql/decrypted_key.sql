-- pgsodium.decrypted_key: every key row (no status or expiry filter), with
-- decrypted_raw_key computed by the same CASE expression as pgsodium. It calls the
-- declared stub pgsodium.crypto_aead_det_decrypt(bytea, bytea, uuid, bytea), so
-- reading decrypted_raw_key directly upstream fails closed with 0A000; through the
-- proxy, the proxy computes that column itself. The other columns read natively.
CREATE OR REPLACE VIEW pgsodium.decrypted_key AS
  SELECT id, status, created, expires, key_type, key_id, key_context, name,
         associated_data, raw_key,
         CASE
           WHEN raw_key IS NULL THEN NULL
           WHEN parent_key IS NULL THEN NULL
           ELSE pgsodium.crypto_aead_det_decrypt(
                  raw_key, convert_to(id::text || associated_data, 'utf8'),
                  parent_key, raw_key_nonce)
         END AS decrypted_raw_key,
         raw_key_nonce, parent_key, comment
    FROM pgsodium.key;
