-- pgsodium.key, its sequence, constraints and indexes exactly as pgsodium 3.1.11
-- (§7), and the valid_key view. Deliberately WITHOUT pgsodium's trigger
-- key_encrypt_secret_trigger_raw_key: the proxy encrypts a raw key under its parent
-- before the row reaches the database (see _proxy_create_raw_key).

CREATE SEQUENCE IF NOT EXISTS pgsodium.key_key_id_seq
  AS bigint START WITH 1 INCREMENT BY 1 MINVALUE 1 NO MAXVALUE CACHE 1;

CREATE TABLE IF NOT EXISTS pgsodium.key (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  status pgsodium.key_status DEFAULT 'valid',
  created timestamp with time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
  expires timestamp with time zone,
  key_type pgsodium.key_type,
  key_id bigint DEFAULT nextval('pgsodium.key_key_id_seq'::regclass),
  key_context bytea DEFAULT 'pgsodium'::bytea,
  name text,
  associated_data text DEFAULT 'associated',
  raw_key bytea,
  raw_key_nonce bytea,
  parent_key uuid,
  comment text,
  user_data text,
  CONSTRAINT key_pkey PRIMARY KEY (id),
  CONSTRAINT key_key_context_check CHECK (length(key_context) = 8),
  CONSTRAINT pgsodium_key_unique_name UNIQUE (name),
  -- A row is either a derived key (key id + context) or a raw key stored
  -- encrypted under a parent key, never both.
  CONSTRAINT pgsodium_raw CHECK (
    CASE WHEN raw_key IS NOT NULL
      THEN key_id IS NULL AND key_context IS NULL AND parent_key IS NOT NULL
      ELSE key_id IS NOT NULL AND key_context IS NOT NULL AND parent_key IS NULL
    END),
  CONSTRAINT key_parent_key_fkey FOREIGN KEY (parent_key) REFERENCES pgsodium.key (id)
);

ALTER SEQUENCE pgsodium.key_key_id_seq OWNED BY pgsodium.key.key_id;

CREATE INDEX IF NOT EXISTS key_status_idx ON pgsodium.key (status)
  WHERE status IN ('valid', 'default');
-- At most one default key.
CREATE UNIQUE INDEX IF NOT EXISTS key_status_idx1 ON pgsodium.key (status)
  WHERE status = 'default';
CREATE UNIQUE INDEX IF NOT EXISTS key_key_id_key_context_key_type_idx
  ON pgsodium.key (key_id, key_context, key_type);

COMMENT ON TABLE pgsodium.key IS
  'pgsodium keys: derived keys (key_id, key_context) and raw keys stored encrypted '
  'under their parent key. Maintained by pgsodium-proxy.';

-- Usable keys only: valid or default, not expired.
CREATE OR REPLACE VIEW pgsodium.valid_key AS
  SELECT id, name, status, key_type, key_id, key_context, created, expires,
         associated_data
    FROM pgsodium.key
   WHERE status IN ('valid', 'default')
     AND (expires IS NULL OR expires > now());
