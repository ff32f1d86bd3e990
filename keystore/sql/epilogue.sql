-- Record which schema version and root key this database belongs to. The prologue
-- refused a different root key already; checked again here under the row lock, so
-- that a wrong root key is never recorded over the right one.
DO $meta$
DECLARE
  stored pgsodium._proxy_meta;
BEGIN
  SELECT * INTO stored FROM pgsodium._proxy_meta FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO pgsodium._proxy_meta (schema_version, root_key_fingerprint)
    VALUES ({{schema_version}}, '{{root_key_fingerprint}}');
  ELSIF stored.root_key_fingerprint <> '{{root_key_fingerprint}}' THEN
    RAISE EXCEPTION USING ERRCODE = '{{fingerprint_sqlstate}}',
      MESSAGE = pg_catalog.format(
        'this database belongs to root key %s, not to root key %s',
        stored.root_key_fingerprint, '{{root_key_fingerprint}}');
  ELSE
    UPDATE pgsodium._proxy_meta
       SET schema_version = {{schema_version}}, upgraded_at = now();
  END IF;
END
$meta$;
