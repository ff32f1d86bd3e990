-- pgsodium_keymaker owns create_key, the SECURITY DEFINER uuid functions and the
-- proxy's SECURITY DEFINER key functions, as in pgsodium. ALTER ... OWNER needs a
-- superuser, or a member of pgsodium_keymaker (SET option on PostgreSQL 16+) while
-- pgsodium_keymaker has CREATE on the schema. So: a superuser just does it; another
-- role grants itself pgsodium_keymaker if it can (CREATEROLE, or ADMIN on the role)
-- and lends CREATE on schema pgsodium to pgsodium_keymaker for the duration of the
-- ALTERs only. If that fails, the installing role keeps ownership (the functions
-- still work, with its rights) and a NOTICE says so.
DO $owner$
DECLARE
  fns regprocedure[] := ARRAY[{{keymaker_functions}}]::regprocedure[];
  fn regprocedure;
  me name := current_user;
  option text := CASE WHEN pg_catalog.current_setting('server_version_num')::int
                           >= 160000 THEN 'SET' ELSE 'MEMBER' END;
  lent_create boolean := false;
BEGIN
  IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = me) THEN
    IF NOT pg_catalog.pg_has_role(me, 'pgsodium_keymaker', option) THEN
      EXECUTE pg_catalog.format('GRANT pgsodium_keymaker TO %I', me);
    END IF;
    IF NOT pg_catalog.has_schema_privilege('pgsodium_keymaker', 'pgsodium',
                                           'CREATE') THEN
      GRANT CREATE ON SCHEMA pgsodium TO pgsodium_keymaker;
      lent_create := true;
    END IF;
  END IF;

  FOREACH fn IN ARRAY fns LOOP
    IF (SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid = fn)
        <> 'pgsodium_keymaker'::regrole THEN
      EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO pgsodium_keymaker', fn);
    END IF;
  END LOOP;

  IF lent_create THEN
    REVOKE CREATE ON SCHEMA pgsodium FROM pgsodium_keymaker;
  END IF;
EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
  RAISE NOTICE USING
    MESSAGE = pg_catalog.format('pgsodium-proxy: role %s cannot make '
      'pgsodium_keymaker the owner of pgsodium.create_key() and the SECURITY '
      'DEFINER key functions; %s keeps owning them', me, me),
    HINT = 'Run init as a superuser, or as a role that can grant itself '
           'pgsodium_keymaker, to get pgsodium''s ownership.';
END
$owner$;

-- The proxy's functions that run as the owner of pgsodium.key (earlier installs
-- gave the key lookups to pgsodium_keymaker). Owning the table
-- they read, they need no grant, so they work while a pg_dump is restored (its
-- grants come after its data).
DO $key_owner$
DECLARE
  fns regprocedure[] := ARRAY[{{key_owner_functions}}]::regprocedure[];
  fn regprocedure;
  owner regrole := (SELECT c.relowner FROM pg_catalog.pg_class c
                     WHERE c.oid = 'pgsodium.key'::pg_catalog.regclass);
BEGIN
  FOREACH fn IN ARRAY fns LOOP
    IF (SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.oid = fn) <> owner THEN
      EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO %s', fn, owner);
    END IF;
  END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE USING
    MESSAGE = pg_catalog.format('pgsodium-proxy: role %s cannot make %s the '
      'owner of the proxy''s key lookup functions', current_user, owner),
    HINT = 'Run init as a superuser to restore dumps through the proxy.';
END
$key_owner$;
