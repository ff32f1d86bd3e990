-- Supabase Vault 0.3's schema and API, with Vault's stored format:
--   secret = encode(aead-det(utf8(secret), AD = utf8(id::text), derived key id 0 in
--            context 'pgsodium', nonce = the row's 16-byte nonce), 'base64').
-- vault.create_secret and vault.update_secret only refuse here: the proxy rewrites
-- calls of them into vault._proxy_create_secret / _proxy_update_secret with the
-- ciphertext it computed, so the database never sees a secret. Skipped where the
-- supabase_vault extension itself is installed.
DO $vault$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'supabase_vault') THEN
    RAISE NOTICE 'pgsodium-proxy: the supabase_vault extension is installed here; '
                 'its schema is left as it is';
    RETURN;
  END IF;
  CREATE SCHEMA IF NOT EXISTS vault;
  CREATE TABLE IF NOT EXISTS vault.secrets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text,
    description text NOT NULL DEFAULT '',
    secret text NOT NULL,
    key_id uuid,
    nonce bytea DEFAULT pg_catalog.uuid_send(gen_random_uuid()),
    created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
  );
  COMMENT ON TABLE vault.secrets IS
    'Table with encrypted `secret` column for storing sensitive information on disk.';
  CREATE UNIQUE INDEX IF NOT EXISTS secrets_name_idx ON vault.secrets (name)
    WHERE name IS NOT NULL;
  DROP TRIGGER IF EXISTS secrets_proxy_tce_guard ON vault.secrets;
  CREATE TRIGGER secrets_proxy_tce_guard BEFORE INSERT OR UPDATE ON vault.secrets
    FOR EACH ROW EXECUTE FUNCTION pgsodium._proxy_tce_guard('secret:text');

  CREATE OR REPLACE VIEW vault.decrypted_secrets AS
    SELECT s.id, s.name, s.description, s.secret,
           pg_catalog.convert_from(pgsodium.crypto_aead_det_decrypt(
             pg_catalog.decode(s.secret, 'base64'),
             pg_catalog.convert_to(s.id::text, 'utf8'),
             0::bigint, 'pgsodium'::bytea, s.nonce), 'utf8') AS decrypted_secret,
           s.key_id, s.nonce, s.created_at, s.updated_at
      FROM vault.secrets s;

  CREATE OR REPLACE FUNCTION vault.create_secret(
    new_secret text, new_name text = NULL, new_description text = '',
    new_key_id uuid = NULL)
    RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $stub$
  BEGIN
    RAISE EXCEPTION USING ERRCODE = '0A000',
      MESSAGE = 'vault.create_secret() must be called through pgsodium-proxy',
      HINT = 'Connect through the pgsodium-proxy port; the proxy encrypts the secret.';
  END
  $stub$;

  CREATE OR REPLACE FUNCTION vault.update_secret(
    secret_id uuid, new_secret text = NULL, new_name text = NULL,
    new_description text = NULL, new_key_id uuid = NULL)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $stub$
  BEGIN
    RAISE EXCEPTION USING ERRCODE = '0A000',
      MESSAGE = 'vault.update_secret() must be called through pgsodium-proxy',
      HINT = 'Connect through the pgsodium-proxy port; the proxy encrypts the secret.';
  END
  $stub$;

  -- What the proxy's rewrite of create_secret calls: the row, already encrypted.
  CREATE OR REPLACE FUNCTION vault._proxy_create_secret(
    new_id uuid, new_secret text, new_nonce bytea, new_name text,
    new_description text, new_key_id uuid)
    RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $create$
  BEGIN
    INSERT INTO vault.secrets (id, secret, nonce, name, description)
    VALUES (new_id, new_secret, new_nonce, new_name,
            coalesce(new_description, ''));
    RETURN new_id;
  END
  $create$;

  -- ... and with the ids, ciphertexts and nonces drawn for
  -- one call, whose runs (one per row PostgreSQL evaluates it for) each store the
  -- next one not stored yet (a volatile function sees the rows its earlier runs in
  -- the same statement inserted). A run past the last is refused, never given an
  -- id (23505) or a nonce twice.
  --
  -- `caller` is the role that called create_secret (CURRENT_USER, evaluated in the
  -- client's statement): it must have EXECUTE on vault.create_secret, and the
  -- session's user must be a member of it, so a direct call claiming a role can
  -- do no more than SET ROLE to it would. Granted to PUBLIC for that reason.
  DROP FUNCTION IF EXISTS vault._proxy_create_secret(
    uuid[], text[], bytea[], text, text, uuid);
  CREATE OR REPLACE FUNCTION vault._proxy_create_secret(
    caller name, new_ids uuid[], new_secrets text[], new_nonces bytea[],
    new_name text, new_description text, new_key_id uuid)
    RETURNS uuid LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $create_rows$
  DECLARE
    i integer;
  BEGIN
    IF NOT (pg_catalog.pg_has_role(session_user, caller, 'MEMBER')
            AND pg_catalog.has_function_privilege(
                  caller, 'vault.create_secret(text, text, text, uuid)', 'EXECUTE'))
    THEN
      RAISE EXCEPTION USING ERRCODE = '42501',
        MESSAGE = 'permission denied for function create_secret';
    END IF;
    SELECT n INTO i
      FROM pg_catalog.generate_subscripts(new_ids, 1) AS n
     WHERE NOT EXISTS (SELECT FROM vault.secrets s WHERE s.id = new_ids[n])
     ORDER BY n LIMIT 1;
    IF i IS NULL THEN
      RAISE EXCEPTION USING ERRCODE = '0A000',
        MESSAGE = pg_catalog.format('pgsodium-proxy cannot evaluate '
          'vault.create_secret() for more than %s rows of one statement (each row '
          'needs an id and a nonce the proxy draws before the statement runs)',
          pg_catalog.cardinality(new_ids)),
        HINT = 'Create the secrets in smaller statements, or one call per row '
               'in INSERT ... VALUES.';
    END IF;
    INSERT INTO vault.secrets (id, secret, nonce, name, description)
    VALUES (new_ids[i], new_secrets[i], new_nonces[i], new_name,
            coalesce(new_description, ''));
    RETURN new_ids[i];
  END
  $create_rows$;

  -- ... and of update_secret: a new secret comes with a new nonce. `caller` as
  -- for create_secret, with EXECUTE on vault.update_secret.
  CREATE OR REPLACE FUNCTION vault._proxy_update_secret(
    caller name, secret_id uuid, new_secret text, new_nonce bytea, new_name text,
    new_description text, new_key_id uuid)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $update$
  BEGIN
    IF NOT (pg_catalog.pg_has_role(session_user, caller, 'MEMBER')
            AND pg_catalog.has_function_privilege(
                  caller, 'vault.update_secret(uuid, text, text, text, uuid)',
                  'EXECUTE'))
    THEN
      RAISE EXCEPTION USING ERRCODE = '42501',
        MESSAGE = 'permission denied for function update_secret';
    END IF;
    UPDATE vault.secrets s
       SET secret = coalesce(new_secret, s.secret),
           nonce = CASE WHEN new_secret IS NULL THEN s.nonce ELSE new_nonce END,
           name = coalesce(new_name, s.name),
           description = coalesce(new_description, s.description),
           updated_at = now()
     WHERE s.id = secret_id;
  END
  $update$;

  REVOKE ALL ON FUNCTION
    vault.create_secret(text, text, text, uuid),
    vault.update_secret(uuid, text, text, text, uuid),
    vault._proxy_create_secret(uuid, text, bytea, text, text, uuid)
  FROM PUBLIC;
  -- The proxy's entry points check their caller themselves (above); those of
  -- schema version 1, which do not, stay the owner's only.
  IF pg_catalog.to_regprocedure(
       'vault._proxy_update_secret(uuid, text, bytea, text, text, uuid)') IS NOT NULL
  THEN
    REVOKE ALL ON FUNCTION
      vault._proxy_update_secret(uuid, text, bytea, text, text, uuid) FROM PUBLIC;
  END IF;
  GRANT EXECUTE ON FUNCTION
    vault._proxy_create_secret(name, uuid[], text[], bytea[], text, text, uuid),
    vault._proxy_update_secret(name, uuid, text, bytea, text, text, uuid)
  TO PUBLIC;
END
$vault$;
