-- Schema, table, view and sequence privileges as pgsodium 3.1.11 leaves them (§9).
-- Each object is reset first, so that a re-run also repairs changed grants.

REVOKE ALL ON SCHEMA pgsodium FROM PUBLIC;
GRANT USAGE ON SCHEMA pgsodium TO PUBLIC;

REVOKE ALL ON TABLE pgsodium.key
  FROM PUBLIC, pgsodium_keyiduser, pgsodium_keyholder, pgsodium_keymaker;
GRANT ALL ON TABLE pgsodium.key TO pgsodium_keymaker;

REVOKE ALL ON SEQUENCE pgsodium.key_key_id_seq
  FROM PUBLIC, pgsodium_keyiduser, pgsodium_keyholder, pgsodium_keymaker;
GRANT ALL ON SEQUENCE pgsodium.key_key_id_seq TO pgsodium_keymaker;

REVOKE ALL ON TABLE pgsodium.valid_key
  FROM PUBLIC, pgsodium_keyiduser, pgsodium_keyholder, pgsodium_keymaker;
GRANT ALL ON TABLE pgsodium.valid_key TO pgsodium_keyholder, pgsodium_keymaker;
GRANT SELECT ON TABLE pgsodium.valid_key TO pgsodium_keyiduser;

REVOKE ALL ON TABLE pgsodium.decrypted_key
  FROM PUBLIC, pgsodium_keyiduser, pgsodium_keyholder, pgsodium_keymaker;
GRANT ALL ON TABLE pgsodium.decrypted_key TO pgsodium_keyholder;
GRANT SELECT ON TABLE pgsodium.decrypted_key TO pgsodium_keymaker;

REVOKE ALL ON TABLE pgsodium._proxy_meta
  FROM PUBLIC, pgsodium_keyiduser, pgsodium_keyholder, pgsodium_keymaker;
GRANT SELECT ON TABLE pgsodium._proxy_meta TO PUBLIC;

-- pgsodium's recorded default privileges for the installing role: later tables and
-- sequences in schema pgsodium go to pgsodium_keyholder. Set last, so the objects
-- above keep exactly the grants written here.
ALTER DEFAULT PRIVILEGES IN SCHEMA pgsodium GRANT ALL ON TABLES TO pgsodium_keyholder;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgsodium
  GRANT ALL ON SEQUENCES TO pgsodium_keyholder;
