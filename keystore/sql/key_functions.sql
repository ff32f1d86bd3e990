-- The key-management functions of pgsodium that need no crypto, as real SQL with
-- pgsodium's signatures, flags and semantics (§7, §11). Owners and EXECUTE grants
-- are set afterwards from keystore.catalogue.

-- One valid_key row by uuid; all-NULL when unknown, invalid or expired.
CREATE OR REPLACE FUNCTION pgsodium.get_key_by_id(uuid)
  RETURNS pgsodium.valid_key
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT * FROM pgsodium.valid_key WHERE id = $1;
$fn$;

CREATE OR REPLACE FUNCTION pgsodium.get_key_by_name(text)
  RETURNS pgsodium.valid_key
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT * FROM pgsodium.valid_key WHERE name = $1;
$fn$;

CREATE OR REPLACE FUNCTION pgsodium.get_named_keys(filter text DEFAULT '%')
  RETURNS SETOF pgsodium.valid_key
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT * FROM pgsodium.valid_key vk WHERE vk.name ILIKE filter;
$fn$;

-- pgsodium reads its extversion; this schema emulates exactly 3.1.11.
CREATE OR REPLACE FUNCTION pgsodium.version()
  RETURNS text
  LANGUAGE sql VOLATILE
AS $fn$
  SELECT '3.1.11'::text;
$fn$;

-- Derived keys are created natively: key_id from the sequence, key_context from the
-- argument, parent_key as given (a non-NULL parent violates pgsodium_raw, as in
-- pgsodium). A raw key must be encrypted under its parent first, which only the
-- proxy can do: it rewrites such calls to pgsodium._proxy_create_raw_key.
CREATE OR REPLACE FUNCTION pgsodium.create_key(
    key_type pgsodium.key_type DEFAULT 'aead-det',
    name text DEFAULT NULL,
    raw_key bytea DEFAULT NULL,
    raw_key_nonce bytea DEFAULT NULL,
    parent_key uuid DEFAULT NULL,
    key_context bytea DEFAULT 'pgsodium'::bytea,
    expires timestamp with time zone DEFAULT NULL,
    associated_data text DEFAULT '')
  RETURNS pgsodium.valid_key
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  new_id uuid;
  result pgsodium.valid_key;
BEGIN
  IF create_key.raw_key IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = '0A000',
      MESSAGE = 'pgsodium.create_key() with a raw_key must be called through '
                'pgsodium-proxy',
      HINT = 'Connect through the pgsodium-proxy port: the proxy evaluates this '
             'function in the statements it is sent, not inside the server (a '
             'column default, a function or trigger body, dynamic SQL, a view that '
             'runs with its owner''s privileges: make it security_invoker).';
  END IF;

  INSERT INTO pgsodium.key (key_id, key_context, key_type, raw_key_nonce,
                            parent_key, expires, name, associated_data)
  VALUES (pg_catalog.nextval('pgsodium.key_key_id_seq'::pg_catalog.regclass),
          create_key.key_context, create_key.key_type, NULL,
          create_key.parent_key, create_key.expires, create_key.name,
          create_key.associated_data)
  RETURNING id INTO new_id;

  SELECT * INTO result FROM pgsodium.valid_key v WHERE v.id = new_id;
  RETURN result;
END
$fn$;
