-- pgsodium's three NOLOGIN roles (cluster-wide, created if missing) and their
-- memberships (§9): keymaker ⊇ keyholder ⊇ keyiduser.
DO $roles$
DECLARE
  role name;
BEGIN
  FOREACH role IN ARRAY ARRAY['pgsodium_keyiduser', 'pgsodium_keyholder',
                              'pgsodium_keymaker']::name[] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role) THEN
      BEGIN
        EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', role);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        -- Another database of this cluster created it concurrently; the advisory
        -- lock only serialises installs into the same database.
        NULL;
      END;
    END IF;
  END LOOP;
END
$roles$;

DO $memberships$
DECLARE
  pair name[];
BEGIN
  FOREACH pair SLICE 1 IN ARRAY ARRAY[
      ['pgsodium_keyiduser', 'pgsodium_keyholder'],
      ['pgsodium_keyiduser', 'pgsodium_keymaker'],
      ['pgsodium_keyholder', 'pgsodium_keymaker']]::name[] LOOP
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_auth_members m
         WHERE m.roleid = pair[1]::text::regrole AND m.member = pair[2]::text::regrole) THEN
      EXECUTE pg_catalog.format('GRANT %I TO %I', pair[1], pair[2]);
    END IF;
  END LOOP;
END
$memberships$;
