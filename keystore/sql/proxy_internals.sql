-- pgsodium-proxy's own objects. Their names start with _proxy_; the proxy refuses
-- client statements that name them, and calls them itself on the client's own
-- upstream connection (so a key created in a transaction is usable in it).

-- Which schema version and which root key this database belongs to. One row.
CREATE TABLE IF NOT EXISTS pgsodium._proxy_meta (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  schema_version integer NOT NULL,
  root_key_fingerprint text NOT NULL,
  installed_at timestamp with time zone NOT NULL DEFAULT now(),
  upgraded_at timestamp with time zone
);
COMMENT ON TABLE pgsodium._proxy_meta IS
  'pgsodium-proxy: schema version and the fingerprint of the root key this '
  'database belongs to. upgraded_at: the last time init ran over this install.';

-- PostgreSQL's own privilege check, done before the proxy evaluates a call: the
-- CURRENT role (SET ROLE included) needs EXECUTE on every function the statement
-- calls, exactly as if the call ran upstream. SECURITY INVOKER on purpose.
CREATE OR REPLACE FUNCTION pgsodium._proxy_check_execute(fns regprocedure[])
  RETURNS void
  LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  fn regprocedure;
  holder name;
  message text;
BEGIN
  FOREACH fn IN ARRAY coalesce(fns, '{}'::regprocedure[]) LOOP
    IF fn IS NOT NULL AND NOT pg_catalog.has_function_privilege(fn, 'EXECUTE') THEN
      -- The least of pgsodium's roles that may call it, for the hint (pgsodium's
      -- roles nest: keymaker holds keyholder, which holds keyiduser).
      SELECT r.rolname INTO holder
        FROM pg_catalog.pg_roles r
        JOIN unnest(ARRAY['pgsodium_keyiduser', 'pgsodium_keyholder',
                          'pgsodium_keymaker']) WITH ORDINALITY AS w(name, n)
          ON r.rolname OPERATOR(pg_catalog.=) w.name
       WHERE pg_catalog.has_function_privilege(r.oid, fn, 'EXECUTE')
       ORDER BY w.n LIMIT 1;
      message := pg_catalog.format('permission denied for function %s',
        (SELECT p.proname FROM pg_catalog.pg_proc p WHERE p.oid = fn));
      IF holder IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = message;
      END IF;
      RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = message,
        HINT = pg_catalog.format('pgsodium grants EXECUTE on this function to %s: '
          'grant that role to this one (GRANT %s TO ...), as pgsodium requires.',
          holder, holder);
    END IF;
  END LOOP;
END
$fn$;

-- The key row of key_uuid, if its key_type is `wanted`, and its parent chain, as
-- text for the proxy (keystore.keys parses it). Entries are separated by ';', the
-- requested key first, then its parent, grandparent...:
--   d,<key_type>,<key_id>,<hex key_context>                      derived key
--   r,<key_type>,<id>,<hex raw_key>,<hex raw_key_nonce or empty>,
--     <hex of convert_to(associated_data, 'utf8') or - if NULL>,<parent uuid or empty>
-- A raw key's parent must be an aead-det row. Like pgsodium's uuid functions (which
-- read decrypted_key), no status or expiry filter applies. No matching row ->
-- P0002 'query returned no rows', pgsodium's own error.
-- SECURITY: EXECUTE only for pgsodium_keyiduser (pgsodium's uuid functions are
-- granted to it). The result holds no usable secret without the root key, which
-- only the proxy has: derived keys are a key id and a context, raw keys are still
-- encrypted under their parent. Who may USE a key is enforced by
-- _proxy_check_execute against pgsodium's grants before the proxy evaluates; the
-- narrow grant keeps encrypted raw keys from roles that could re-store them.
CREATE OR REPLACE FUNCTION pgsodium._proxy_key_material(
    key_uuid uuid, wanted pgsodium.key_type)
  RETURNS text
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  k pgsodium.key;
  next_uuid uuid := key_uuid;
  next_type pgsodium.key_type := wanted;
  entries text[] := '{}';
BEGIN
  -- 16 levels: deeper chains only arise from a cycle of parent keys.
  FOR depth IN 1..16 LOOP
    SELECT * INTO STRICT k FROM pgsodium.key
     WHERE id = next_uuid AND key_type = next_type;
    IF k.raw_key IS NULL THEN
      entries := entries || pg_catalog.format('d,%s,%s,%s', k.key_type, k.key_id,
        pg_catalog.encode(k.key_context, 'hex'));
      RETURN pg_catalog.array_to_string(entries, ';');
    END IF;
    entries := entries || pg_catalog.format('r,%s,%s,%s,%s,%s,%s',
      k.key_type, k.id, pg_catalog.encode(k.raw_key, 'hex'),
      coalesce(pg_catalog.encode(k.raw_key_nonce, 'hex'), ''),
      coalesce(pg_catalog.encode(
        pg_catalog.convert_to(k.associated_data, 'utf8'), 'hex'), '-'),
      coalesce(k.parent_key::text, ''));
    IF k.parent_key IS NULL THEN
      RETURN pg_catalog.array_to_string(entries, ';');
    END IF;
    next_uuid := k.parent_key;
    next_type := 'aead-det';
  END LOOP;
  -- pgsodium itself would recurse until 'stack depth limit exceeded' (54001).
  RAISE EXCEPTION USING ERRCODE = '54001',
    MESSAGE = pg_catalog.format(
      'pgsodium key %s has a chain of parent keys deeper than 16 (a cycle?)',
      key_uuid);
END
$fn$;

-- Inserts a raw key row whose raw_key the proxy has ALREADY encrypted under
-- parent_key (AD = id text || associated_data, nonce raw_key_nonce), as pgsodium's
-- trigger would have; returns the valid_key row like create_key.
-- XXX: callable by PUBLIC (as create_key is) and by anyone connected upstream
-- directly, who can thus store an arbitrary blob as a raw key. Such a key fails
-- to decrypt unless it was really encrypted under its parent for this id; with a
-- NULL associated_data the id is not bound, so a ciphertext read back through
-- _proxy_key_material could be stored again under a new id and key_type.
-- Key material of whatever type the row has, or NULL when there is no such key:
-- the proxy reads it per row for pgsodium calls over rows and applies pgsodium's
-- type check and P0002 itself. The anyelement overload answers NULL for values of
-- other types (a bigint key id, a bytea key), so the proxy can ask for any argument.
-- SECURITY: as _proxy_key_material, for pgsodium_keyiduser only.
CREATE OR REPLACE FUNCTION pgsodium._proxy_key_ref(key_uuid uuid)
  RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
  -- Called once a row: a derived key's entry is written here, as
  -- _proxy_key_material writes it, in one query (plpgsql calling
  -- _proxy_key_material took 7 us a row upstream, this 3 us: bench/rows.py).
  SELECT CASE WHEN k.raw_key IS NULL
              THEN pg_catalog.format('d,%s,%s,%s', k.key_type, k.key_id,
                     pg_catalog.encode(k.key_context, 'hex'))
              ELSE pgsodium._proxy_key_material(k.id, k.key_type) END
    FROM pgsodium.key k
   WHERE k.id = key_uuid
$fn$;

-- Every aead-det key's material, for a COPY into a column labelled ENCRYPT WITH
-- KEY COLUMN: its rows name their keys as they stream, while the connection is
-- busy with the COPY and no lookup can run on it. The proxy refuses the COPY past
-- 100000 keys (it asks for one more to know).
-- SECURITY: as _proxy_key_material, for pgsodium_keyiduser only.
CREATE OR REPLACE FUNCTION pgsodium._proxy_key_materials()
  RETURNS TABLE (key_uuid uuid, material text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT k.id, pgsodium._proxy_key_material(k.id, 'aead-det')
    FROM pgsodium.key k
   WHERE k.key_type = 'aead-det'
   LIMIT 100001
$fn$;

CREATE OR REPLACE FUNCTION pgsodium._proxy_key_ref(other anyelement)
  RETURNS text
  LANGUAGE sql IMMUTABLE
AS $fn$ SELECT NULL::text $fn$;

-- Before key_context was a parameter (never released; keeps re-runs clean).
DROP FUNCTION IF EXISTS pgsodium._proxy_create_raw_key(
    uuid, pgsodium.key_type, text, bytea, bytea, uuid, timestamp with time zone, text);

-- With a NULL raw_key (a NULL bind value) it is create_key of a derived key.
CREATE OR REPLACE FUNCTION pgsodium._proxy_create_raw_key(
    id uuid, key_type pgsodium.key_type, name text, raw_key bytea,
    raw_key_nonce bytea, parent_key uuid, expires timestamp with time zone,
    associated_data text, key_context bytea DEFAULT '\x7067736f6469756d'::bytea)
  RETURNS pgsodium.valid_key
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  result pgsodium.valid_key;
BEGIN
  IF _proxy_create_raw_key.raw_key IS NULL THEN
    RETURN pgsodium.create_key(_proxy_create_raw_key.key_type,
      _proxy_create_raw_key.name, NULL, _proxy_create_raw_key.raw_key_nonce,
      _proxy_create_raw_key.parent_key, _proxy_create_raw_key.key_context,
      _proxy_create_raw_key.expires, _proxy_create_raw_key.associated_data);
  END IF;
  INSERT INTO pgsodium.key (id, key_type, name, raw_key, raw_key_nonce, parent_key,
                            expires, associated_data, key_id, key_context)
  VALUES (_proxy_create_raw_key.id, _proxy_create_raw_key.key_type,
          _proxy_create_raw_key.name, _proxy_create_raw_key.raw_key,
          _proxy_create_raw_key.raw_key_nonce, _proxy_create_raw_key.parent_key,
          _proxy_create_raw_key.expires, _proxy_create_raw_key.associated_data,
          NULL, NULL);

  SELECT * INTO result FROM pgsodium.valid_key v WHERE v.id = _proxy_create_raw_key.id;
  RETURN result;
END
$fn$;

-- Raises exactly this SQLSTATE and message, so that an error the proxy computed
-- aborts the upstream transaction just as the same error raised upstream would.
CREATE OR REPLACE FUNCTION pgsodium._proxy_raise(sqlstate text, message text)
  RETURNS void
  LANGUAGE plpgsql VOLATILE
AS $fn$
BEGIN
  RAISE EXCEPTION USING ERRCODE = _proxy_raise.sqlstate,
    MESSAGE = _proxy_raise.message;
END
$fn$;
