-- pgsodium-proxy upstream schema: prologue.
-- The caller runs the whole script in ONE transaction. Everything below is
-- idempotent: safe to run again, and over an older install to upgrade it.

SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- Two proxies running `init` at once serialise here. The key is "pgsodium" read as a
-- big-endian 64-bit integer; the lock is per database and ends with the transaction.
SELECT pg_catalog.pg_advisory_xact_lock({{advisory_lock_key}});

-- Refuse before changing anything: a server older than 13, a real pgsodium extension
-- installed here, a database bound to another root key, or a schema newer than this
-- proxy.
DO $guard$
DECLARE
  stored record;
BEGIN
  -- gen_random_uuid() is built in from 13 on; pgsodium 3.1.11 needs 13 as well.
  IF pg_catalog.current_setting('server_version_num')::int < 130000 THEN
    RAISE EXCEPTION USING ERRCODE = '0A000',
      MESSAGE = 'pgsodium-proxy needs PostgreSQL 13 or later';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pgsodium') THEN
    RAISE EXCEPTION USING ERRCODE = '55000',
      MESSAGE = 'the pgsodium extension is installed in this database',
      HINT = 'pgsodium-proxy installs its own pgsodium schema; it does not run '
             'over the extension.';
  END IF;
  IF pg_catalog.to_regclass('pgsodium._proxy_meta') IS NULL THEN
    RETURN;
  END IF;
  SELECT schema_version, root_key_fingerprint INTO stored FROM pgsodium._proxy_meta;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  IF stored.root_key_fingerprint <> '{{root_key_fingerprint}}' THEN
    RAISE EXCEPTION USING ERRCODE = '{{fingerprint_sqlstate}}',
      MESSAGE = pg_catalog.format(
        'this database belongs to root key %s, not to root key %s',
        stored.root_key_fingerprint, '{{root_key_fingerprint}}'),
      HINT = 'Start pgsodium-proxy with the root key this database was '
             'initialised with.';
  END IF;
  IF stored.schema_version > {{schema_version}} THEN
    RAISE EXCEPTION USING ERRCODE = '55000',
      MESSAGE = pg_catalog.format(
        'the pgsodium-proxy schema here is version %s, newer than this proxy''s %s',
        stored.schema_version, {{schema_version}}),
      HINT = 'Upgrade pgsodium-proxy before running init.';
  END IF;
END
$guard$;
