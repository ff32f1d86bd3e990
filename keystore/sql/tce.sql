-- Transparent Column Encryption: labels, masking views, decrypting views, guard.
--
-- Vanilla PostgreSQL has no "pgsodium" label provider, so the proxy takes
-- SECURITY LABEL FOR pgsodium itself and records the label in pgsodium._proxy_label
-- (same key as pg_seclabel: classoid, objoid, objsubid). pgsodium's masking_rule,
-- mask_columns and seclabel views read that table. The decrypting view
-- <schema>.decrypted_<table> is generated here with pgsodium's own CASE expression
-- (reading decrypted_<c> directly raises the stub's 0A000; the proxy expands reads of
-- the view). A guard trigger, which needs no key, refuses a stored value that cannot
-- be pgsodium ciphertext: plaintext written past the proxy never lands.

CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_may_label(class_oid oid, object_oid oid)
  RETURNS boolean LANGUAGE sql STABLE AS $may$
  SELECT CASE WHEN class_oid = 'pg_catalog.pg_class'::regclass
              THEN coalesce((SELECT pg_catalog.pg_has_role(current_user, c.relowner,
                                                           'USAGE')
                               FROM pg_catalog.pg_class c WHERE c.oid = object_oid),
                            false)
              ELSE EXISTS (SELECT FROM pg_catalog.pg_roles
                            WHERE rolname = current_user
                              AND (rolsuper OR rolcreaterole)) END
$may$;

CREATE TABLE IF NOT EXISTS pgsodium._proxy_label (
  classoid oid NOT NULL,
  objoid oid NOT NULL,
  objsubid integer NOT NULL DEFAULT 0,
  label text NOT NULL,
  PRIMARY KEY (classoid, objoid, objsubid),
  -- A view name that to_regclass and parse_ident read without error, so that no
  -- label can make the lookups of other sessions fail.
  CONSTRAINT _proxy_label_view_name CHECK (
    label !~* '^decrypt'
    OR label ~* '^decrypt +with +view +[a-z_][a-z0-9_$]*[.][a-z_][a-z0-9_$]* *$')
);
REVOKE ALL ON pgsodium._proxy_label FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pgsodium._proxy_label TO PUBLIC;
ALTER TABLE pgsodium._proxy_label ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS _proxy_label_read ON pgsodium._proxy_label;
CREATE POLICY _proxy_label_read ON pgsodium._proxy_label FOR SELECT USING (true);

-- The labelled object by name too. pg_dump writes regclass and regrole values as
-- names, so a restored database (where every oid differs) gets each label back on
-- its own table, column or role; bound_oid is the oid the row was written for, and
-- tells a restored row (relation::oid <> bound_oid: find the column by its name)
-- from a renamed column (same oid: keep its attnum).
ALTER TABLE pgsodium._proxy_label
  ADD COLUMN IF NOT EXISTS relation regclass,
  ADD COLUMN IF NOT EXISTS column_name name,
  ADD COLUMN IF NOT EXISTS role regrole,
  ADD COLUMN IF NOT EXISTS bound_oid oid;
UPDATE pgsodium._proxy_label l
   SET relation = l.objoid::regclass, bound_oid = l.objoid,
       column_name = (SELECT a.attname FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = l.objoid AND a.attnum = l.objsubid
                         AND l.objsubid > 0)
 WHERE l.classoid = 'pg_catalog.pg_class'::regclass AND l.relation IS NULL
   AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = l.objoid);
UPDATE pgsodium._proxy_label l SET role = l.objoid::regrole, bound_oid = l.objoid
 WHERE l.classoid = 'pg_catalog.pg_authid'::regclass AND l.role IS NULL
   AND EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = l.objoid);

-- The labels as they stand on this database's objects (pg_seclabel's columns).
CREATE OR REPLACE VIEW pgsodium._proxy_label_live AS
  SELECT l.classoid,
         coalesce(l.relation::oid, l.role::oid, l.objoid) AS objoid,
         CASE WHEN l.objsubid = 0 OR l.relation IS NULL
                   OR l.relation::oid = l.bound_oid
              THEN l.objsubid
              ELSE coalesce((SELECT a.attnum FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid = l.relation
                                AND a.attname = l.column_name
                                AND NOT a.attisdropped), -1) END AS objsubid,
         l.label
    FROM pgsodium._proxy_label l;
REVOKE ALL ON pgsodium._proxy_label_live FROM PUBLIC;
GRANT SELECT ON pgsodium._proxy_label_live TO PUBLIC;

DROP POLICY IF EXISTS _proxy_label_owner ON pgsodium._proxy_label;
CREATE POLICY _proxy_label_owner ON pgsodium._proxy_label FOR ALL
  USING (pgsodium._proxy_tce_may_label(
           classoid, coalesce(relation::oid, role::oid, objoid)))
  WITH CHECK (pgsodium._proxy_tce_may_label(
                classoid, coalesce(relation::oid, role::oid, objoid)));

-- Rows restored from a dump carry the oids of the database they were dumped
-- from: realigned with their names before any label is written, so that the
-- writer's own row is found. As the owner: realigning changes no label's meaning,
-- only its oids. Stale rows are first parked on identities no object has (oid 0),
-- so no two rows ever collide on the primary key on the way.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_rebind()
  RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $rebind$
DECLARE
  r record;
  parked integer := 0;
  target_oid oid;
  target_sub integer;
BEGIN
  FOR r IN SELECT l.ctid AS row_id FROM pgsodium._proxy_label l
            WHERE (l.relation IS NOT NULL OR l.role IS NOT NULL)
              AND coalesce(l.relation::oid, l.role::oid) IS DISTINCT FROM l.bound_oid
  LOOP
    parked := parked + 1;
    UPDATE pgsodium._proxy_label SET objoid = 0, objsubid = -parked
     WHERE ctid = r.row_id;
  END LOOP;
  FOR r IN SELECT l.*, l.ctid AS row_id FROM pgsodium._proxy_label l
            WHERE l.objoid = 0 AND l.objsubid < 0
  LOOP
    target_oid := coalesce(r.relation::oid, r.role::oid);
    target_sub := 0;
    IF r.relation IS NOT NULL AND r.column_name IS NOT NULL THEN
      SELECT a.attnum INTO target_sub FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = r.relation AND a.attname = r.column_name
         AND NOT a.attisdropped;
    END IF;
    IF target_sub IS NULL OR EXISTS (
         SELECT FROM pgsodium._proxy_label m
          WHERE m.classoid = r.classoid AND m.objoid = target_oid
            AND m.objsubid = target_sub) THEN
      DELETE FROM pgsodium._proxy_label WHERE ctid = r.row_id;  -- gone, or set anew
    ELSE
      UPDATE pgsodium._proxy_label
         SET objoid = target_oid, objsubid = target_sub, bound_oid = target_oid
       WHERE ctid = r.row_id;
    END IF;
  END LOOP;
END
$rebind$;
REVOKE ALL ON FUNCTION pgsodium._proxy_tce_rebind() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgsodium._proxy_tce_rebind() TO PUBLIC;

-- The rules, readable by everyone as pg_seclabel is; pgsodium.masking_rule shows
-- them with pgsodium's grants, and the proxy's own functions read this one.
CREATE OR REPLACE VIEW pgsodium._proxy_tce_rule AS
  WITH const AS (
    SELECT
      'encrypt +with +key +id +([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'::text
        AS pattern_key_id,
      E'encrypt +with +key +column +([\\w\\"\\-$]+)'::text AS pattern_key_id_column,
      E'(?<=associated) +\\(([\\w\\"\\-$, ]+)\\)'::text AS pattern_associated_columns,
      E'(?<=nonce) +([\\w\\"\\-$]+)'::text AS pattern_nonce_column,
      E'(?<=decrypt with view) +([\\w\\"\\-$]+\\.[\\w\\"\\-$]+)'::text AS pattern_view_name,
      '(?<=security invoker)'::text AS pattern_security_invoker
  ), rules AS (
    SELECT sl.objoid AS attrelid, sl.objsubid AS attnum,
           c.relnamespace::regnamespace AS relnamespace, c.relname,
           a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS format_type,
           sl.label AS col_description,  -- sic: pgsodium puts the label here
           (regexp_match(sl.label, k.pattern_key_id_column, 'i'))[1] AS key_id_column,
           (regexp_match(sl.label, k.pattern_key_id, 'i'))[1] AS key_id,
           (regexp_match(sl.label, k.pattern_associated_columns, 'i'))[1]
             AS associated_columns,
           (regexp_match(sl.label, k.pattern_nonce_column, 'i'))[1] AS nonce_column,
           coalesce((regexp_match(tl.label, k.pattern_view_name, 'i'))[1],
                    pg_catalog.quote_ident(n.nspname) || '.'
                    || pg_catalog.quote_ident('decrypted_' || c.relname)) AS view_name,
           100 AS priority,
           (regexp_match(sl.label, k.pattern_security_invoker, 'i')) IS NOT NULL
             AS security_invoker
      FROM const k
      CROSS JOIN pgsodium._proxy_label_live sl
      JOIN pg_catalog.pg_class c
        ON c.oid = sl.objoid AND sl.classoid = 'pg_catalog.pg_class'::regclass
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = sl.objsubid
      LEFT JOIN pgsodium._proxy_label_live tl
        ON tl.classoid = sl.classoid AND tl.objoid = sl.objoid AND tl.objsubid = 0
     WHERE a.attnum > 0 AND n.nspname <> 'pg_catalog' AND NOT a.attisdropped
       AND sl.label ILIKE 'ENCRYPT%'
  )
  SELECT DISTINCT ON (attrelid, attnum) * FROM rules
   ORDER BY attrelid, attnum, priority DESC;

CREATE OR REPLACE VIEW pgsodium.masking_rule AS
  SELECT * FROM pgsodium._proxy_tce_rule;

CREATE OR REPLACE VIEW pgsodium.mask_columns AS
  SELECT a.attname, a.attrelid, m.key_id, m.key_id_column, m.associated_columns,
         m.nonce_column, m.format_type
    FROM pg_catalog.pg_attribute a
    LEFT JOIN pgsodium._proxy_tce_rule m
      ON m.attrelid = a.attrelid AND m.attname = a.attname
   WHERE a.attnum > 0 AND NOT a.attisdropped
   ORDER BY a.attnum;

CREATE OR REPLACE VIEW pgsodium.seclabel AS
  SELECT n.nspname, c.relname, a.attname, sl.label
    FROM pgsodium._proxy_label_live sl
    JOIN pg_catalog.pg_class c
      ON c.oid = sl.objoid AND sl.classoid = 'pg_catalog.pg_class'::regclass
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = sl.objsubid
   WHERE sl.objsubid > 0;

-- pgsodium's grants on its three views (§9); the rules themselves stay readable.
REVOKE ALL ON pgsodium.masking_rule, pgsodium.mask_columns, pgsodium.seclabel
  FROM PUBLIC, pgsodium_keyiduser, pgsodium_keyholder, pgsodium_keymaker;
GRANT ALL ON pgsodium.masking_rule, pgsodium.mask_columns, pgsodium.seclabel
  TO pgsodium_keyholder;
REVOKE ALL ON pgsodium._proxy_tce_rule FROM PUBLIC;
GRANT SELECT ON pgsodium._proxy_tce_rule TO PUBLIC;

-- The relation a rule's view name names, looked up without the schema USAGE check
-- of to_regclass: a session must not fail because some other schema is closed to it.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_view_oid(view_name text)
  RETURNS oid LANGUAGE sql STABLE AS $view_oid$
  SELECT v.oid
    FROM pg_catalog.pg_class v
    JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
   WHERE n.nspname = (pg_catalog.parse_ident(view_name))[1]
     AND v.relname = (pg_catalog.parse_ident(view_name))[2]
$view_oid$;

-- The guard: BEFORE INSERT OR UPDATE, arguments "<column>:<text|bytea>". A stored
-- aead-det ciphertext is the plaintext plus 32 bytes (the SIV tag), and pgsodium
-- refuses empty plaintexts, so at least 33 bytes; text columns hold it as
-- PostgreSQL base64. Needs no key, so it also holds for clients that bypass the proxy.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_guard()
  RETURNS trigger LANGUAGE plpgsql AS $guard$
DECLARE
  row_json jsonb := pg_catalog.to_jsonb(NEW);
  arg text;
  col text;
  kind text;
  stored text;
  bytes integer;
BEGIN
  FOREACH arg IN ARRAY TG_ARGV LOOP
    col := pg_catalog.split_part(arg, ':', 1);
    kind := pg_catalog.split_part(arg, ':', 2);
    stored := row_json ->> col;
    CONTINUE WHEN stored IS NULL;
    bytes := NULL;
    IF kind = 'bytea' THEN
      IF pg_catalog.left(stored, 2) = E'\\x'
         AND pg_catalog.substr(stored, 3) ~ '^([0-9a-f]{2})*$' THEN
        bytes := (pg_catalog.length(stored) - 2) / 2;
      END IF;
    ELSIF stored ~ E'^[A-Za-z0-9+/=\n]+$' THEN
      BEGIN
        bytes := pg_catalog.length(pg_catalog.decode(stored, 'base64'));
      EXCEPTION WHEN OTHERS THEN
        bytes := NULL;
      END;
    END IF;
    IF bytes = 32 THEN
      -- The ciphertext of an empty plaintext, which pgsodium cannot decrypt: refused
      -- with pgsodium's own error.
      RAISE EXCEPTION USING ERRCODE = 'P0001',
        MESSAGE = CASE WHEN kind = 'bytea' THEN 'Cannot encrypt empty bytes.'
                       ELSE 'Cannot encrypt empty string.' END;
    END IF;
    IF bytes IS NULL OR bytes < 32 THEN
      RAISE EXCEPTION USING ERRCODE = '0A000',
        MESSAGE = pg_catalog.format(
          'column %s of %s is encrypted by pgsodium-proxy: write it through the proxy',
          pg_catalog.quote_ident(col), TG_TABLE_NAME),
        HINT = 'Connect through the pgsodium-proxy port; the proxy encrypts the value.';
    END IF;
  END LOOP;
  RETURN NEW;
END
$guard$;

-- The decrypted column pgsodium's create_mask_view puts after an encrypted column.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_decrypted(rule pgsodium._proxy_tce_rule)
  RETURNS text LANGUAGE plpgsql STABLE AS $decrypted$
DECLARE
  key_expr text;
  ad text := '''''';
  nonce text := 'NULL';
  col text := pg_catalog.quote_ident(rule.attname);
BEGIN
  IF rule.key_id_column IS NOT NULL THEN
    key_expr := pg_catalog.quote_ident(rule.key_id_column);
  ELSE
    key_expr := pg_catalog.quote_literal(rule.key_id);
  END IF;
  IF rule.associated_columns IS NOT NULL THEN
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(pg_catalog.btrim(c)) || '::text',
                                 ' || ')
      INTO ad
      FROM pg_catalog.unnest(pg_catalog.string_to_array(rule.associated_columns, ','))
           AS c;
  END IF;
  IF rule.nonce_column IS NOT NULL THEN
    nonce := pg_catalog.quote_ident(rule.nonce_column);
  END IF;
  IF rule.format_type = 'text' THEN
    RETURN pg_catalog.format(
      'CASE WHEN %s IS NULL THEN NULL ELSE CASE WHEN %s IS NULL THEN NULL ELSE '
      'pg_catalog.convert_from(pgsodium.crypto_aead_det_decrypt('
      'pg_catalog.decode(%s, ''base64''), pg_catalog.convert_to((%s)::text, ''utf8''), '
      '%s::uuid, %s), ''utf8'') END END AS %s',
      col, key_expr, col, ad, key_expr, nonce,
      pg_catalog.quote_ident('decrypted_' || rule.attname));
  END IF;
  RETURN pg_catalog.format(
    'CASE WHEN %s IS NULL THEN NULL ELSE CASE WHEN %s IS NULL THEN NULL ELSE '
    'pgsodium.crypto_aead_det_decrypt(%s, pg_catalog.convert_to((%s)::text, ''utf8''), '
    '%s::uuid, %s) END END AS %s',
    col, key_expr, col, ad, key_expr, nonce,
    pg_catalog.quote_ident('decrypted_' || rule.attname));
END
$decrypted$;

-- pgsodium's mask_role for a role labelled `ACCESS <table>`: SELECT on
-- pgsodium.key, membership in pgsodium_keyiduser and pgsodium_keyholder, ALL on
-- the table's decrypting view. As the owner (granting role membership needs it),
-- and only for a role whose ACCESS label (set by a CREATEROLE role) names the table,
-- on the table owner's regeneration; pgsodium lets anyone call mask_role for any
-- role, which hands out pgsodium_keyholder.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_grant_access(
  masked_role regrole, target oid, view_name text)
  RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $grant$
DECLARE
  qualified text;
BEGIN
  SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) INTO qualified
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = target
     AND pg_catalog.pg_has_role(session_user, c.relowner, 'USAGE');
  IF qualified IS NULL OR NOT EXISTS (
       SELECT FROM pgsodium._proxy_label_live l
        WHERE l.classoid = 'pg_catalog.pg_authid'::regclass
          AND l.objoid = masked_role::oid
          AND l.label ILIKE 'ACCESS%' || qualified || '%') THEN
    RAISE EXCEPTION USING ERRCODE = '42501',
      MESSAGE = pg_catalog.format('no ACCESS label of role %s names this table',
                                  masked_role);
  END IF;
  EXECUTE pg_catalog.format('GRANT SELECT ON pgsodium.key TO %s', masked_role);
  EXECUTE pg_catalog.format('GRANT pgsodium_keyiduser, pgsodium_keyholder TO %s',
                            masked_role);
  EXECUTE pg_catalog.format('GRANT ALL ON %s TO %s',
                            pgsodium._proxy_tce_view_oid(view_name)::regclass,
                            masked_role);
END
$grant$;
REVOKE ALL ON FUNCTION pgsodium._proxy_tce_grant_access(regrole, oid, text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgsodium._proxy_tce_grant_access(regrole, oid, text)
  TO PUBLIC;

-- Regenerate the decrypting view and the guard trigger of one table (pgsodium's
-- update_mask), keeping the view's grants; ACCESS role labels get the view too.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_regenerate(target oid)
  RETURNS void LANGUAGE plpgsql AS $regenerate$
DECLARE
  rel pg_catalog.pg_class;
  qualified text;
  view_name text;
  view_parts text[];
  invoker boolean;
  cols text;
  guard_args text;
  privs aclitem[];
  grant_row record;
  role_row record;
BEGIN
  SELECT * INTO rel FROM pg_catalog.pg_class WHERE oid = target;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  qualified := pg_catalog.format('%I.%I',
                 (SELECT nspname FROM pg_catalog.pg_namespace
                   WHERE oid = rel.relnamespace), rel.relname);
  SELECT m.view_name, bool_or(m.security_invoker) INTO view_name, invoker
    FROM pgsodium._proxy_tce_rule m WHERE m.attrelid = target GROUP BY m.view_name;

  -- Dropped only where they exist: DROP … IF EXISTS would send the client a
  -- NOTICE about something it never made.
  IF EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = target
              AND t.tgname = rel.relname || '_proxy_tce_guard') THEN
    EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s',
                              rel.relname || '_proxy_tce_guard', qualified);
  END IF;
  IF view_name IS NULL THEN
    -- No encrypted column left. A view generated before keeps the table's columns
    -- only: no decrypted_<c> of a column that is no longer encrypted is left to
    -- fail when read (its grants and dependents stay).
    SELECT coalesce(
             (regexp_match(l.label,
                E'(?<=decrypt with view) +([\\w\\"\\-$]+\\.[\\w\\"\\-$]+)', 'i'))[1],
             pg_catalog.quote_ident(n.nspname) || '.'
             || pg_catalog.quote_ident('decrypted_' || rel.relname))
      INTO view_name
      FROM pg_catalog.pg_namespace n
      LEFT JOIN pgsodium._proxy_label_live l
        ON l.classoid = 'pg_catalog.pg_class'::regclass AND l.objoid = target
       AND l.objsubid = 0
     WHERE n.oid = rel.relnamespace;
    IF pgsodium._proxy_tce_view_oid(view_name) IS NULL THEN
      RETURN;
    END IF;
  END IF;
  -- The name comes from a label: re-quote it, so it can only ever name a view
  -- (pgsodium 3.1.10's injection fix does the same with ::regclass).
  view_parts := pg_catalog.parse_ident(view_name);
  IF pg_catalog.cardinality(view_parts) <> 2 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = pg_catalog.format('view name %s is not schema-qualified', view_name);
  END IF;
  view_name := pg_catalog.format('%I.%I', view_parts[1], view_parts[2]);

  SELECT pg_catalog.string_agg(
           pg_catalog.quote_ident(a.attname)
           || CASE WHEN m.attrelid IS NULL THEN ''
                   ELSE ', ' || pgsodium._proxy_tce_decrypted(m) END,
           ', ' ORDER BY a.attnum),
         pg_catalog.string_agg(
           CASE WHEN m.attrelid IS NOT NULL
                THEN pg_catalog.quote_literal(a.attname || ':' || m.format_type) END,
           ', ' ORDER BY a.attnum)
    INTO cols, guard_args
    FROM pg_catalog.pg_attribute a
    LEFT JOIN pgsodium._proxy_tce_rule m
      ON m.attrelid = a.attrelid AND m.attnum = a.attnum
   WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped;

  SELECT c.relacl INTO privs FROM pg_catalog.pg_class c
   WHERE c.oid = pgsodium._proxy_tce_view_oid(view_name);
  IF NOT FOUND THEN
    privs := rel.relacl;
  END IF;
  IF pgsodium._proxy_tce_view_oid(view_name) IS NOT NULL THEN
    EXECUTE pg_catalog.format('DROP VIEW %s', view_name);
  END IF;
  EXECUTE pg_catalog.format('CREATE VIEW %s %s AS SELECT %s FROM %s', view_name,
    CASE WHEN invoker THEN 'WITH (security_invoker = true)' ELSE '' END,
    cols, qualified);
  FOR grant_row IN
    SELECT g.grantee, g.privilege_type FROM pg_catalog.aclexplode(privs) g
     WHERE g.grantee <> rel.relowner
  LOOP
    EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', grant_row.privilege_type,
      view_name, CASE WHEN grant_row.grantee = 0 THEN 'PUBLIC'
                      ELSE pg_catalog.quote_ident(grant_row.grantee::regrole::text)
                 END);
  END LOOP;
  FOR role_row IN
    SELECT r.oid FROM pgsodium._proxy_label_live l
      JOIN pg_catalog.pg_roles r ON r.oid = l.objoid
     WHERE l.classoid = 'pg_catalog.pg_authid'::regclass
       AND l.label ILIKE 'ACCESS%' || qualified || '%'
  LOOP
    PERFORM pgsodium._proxy_tce_grant_access(role_row.oid::regrole, target,
                                             view_name);
  END LOOP;

  IF guard_args IS NOT NULL THEN
    EXECUTE pg_catalog.format(
      'CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW '
      'EXECUTE FUNCTION pgsodium._proxy_tce_guard(%s)',
      rel.relname || '_proxy_tce_guard', qualified, guard_args);
  END IF;
END
$regenerate$;

CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_auto() RETURNS boolean
  LANGUAGE sql STABLE AS $auto$
  SELECT coalesce(pg_catalog.current_setting('pgsodium.enable_event_trigger', true),
                  'on') NOT IN ('off', 'false', '0', 'no')
$auto$;

-- SECURITY LABEL FOR pgsodium, as the proxy passes it: the object already split
-- into a relation (or role) name and a column. Runs as the caller, who must own the
-- object as for SECURITY LABEL; the row itself is written by _proxy_tce_record.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_set_label(
  objtype text, object text, column_name text, new_label text)
  RETURNS void LANGUAGE plpgsql AS $set_label$
DECLARE
  rel oid;
  rel_kind "char";
  subid integer := 0;
  rule pgsodium._proxy_tce_rule;
  col_type text;
  key_type text;
  ad text;
  dependency name;
  dependent name;
BEGIN
  IF objtype = 'role' THEN
    IF new_label IS NOT NULL AND new_label !~* '^access' THEN
      RAISE EXCEPTION USING ERRCODE = '42602',
        MESSAGE = pg_catalog.format('''%s'' is not a valid label for a role', new_label);
    END IF;
    SELECT oid INTO rel FROM pg_catalog.pg_roles WHERE rolname = object;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = '42704',
        MESSAGE = pg_catalog.format('role "%s" does not exist', object);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles
                    WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
      RAISE EXCEPTION USING ERRCODE = '42501',
        MESSAGE = 'must have CREATEROLE privilege to label roles';
    END IF;
    PERFORM pgsodium._proxy_tce_record('pg_catalog.pg_authid'::regclass, rel, 0,
                                       new_label);
    RETURN;
  END IF;

  rel := object::regclass;
  SELECT c.relkind INTO rel_kind FROM pg_catalog.pg_class c WHERE c.oid = rel;
  IF rel_kind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION USING ERRCODE = '0A000',
      MESSAGE = 'pgsodium provider does not support labels on this object';
  END IF;
  IF NOT pg_catalog.pg_has_role(current_user,
           (SELECT relowner FROM pg_catalog.pg_class WHERE oid = rel), 'USAGE') THEN
    -- PostgreSQL's check_object_ownership: the bare relation name, and "relation"
    -- for a column.
    RAISE EXCEPTION USING ERRCODE = '42501',
      MESSAGE = pg_catalog.format('must be owner of %s %s',
        CASE WHEN objtype = 'column' THEN 'relation' ELSE 'table' END,
        (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = rel));
  END IF;
  IF objtype = 'column' THEN
    SELECT a.attnum, pg_catalog.format_type(a.atttypid, a.atttypmod)
      INTO subid, col_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = rel AND a.attname = column_name AND NOT a.attisdropped;
    IF NOT FOUND THEN
      -- `object` is quoted for ::regclass; PostgreSQL names the relation as
      -- written, unquoted (NameListToString).
      RAISE EXCEPTION USING ERRCODE = '42703',
        MESSAGE = pg_catalog.format('column "%s" of relation "%s" does not exist',
          column_name,
          pg_catalog.array_to_string(pg_catalog.parse_ident(object), '.'));
    END IF;
    IF new_label IS NOT NULL AND new_label !~* '^encrypt +with' THEN
      RAISE EXCEPTION USING ERRCODE = '42602',
        MESSAGE = pg_catalog.format('''%s'' is not a valid label for a column',
                                    new_label);
    END IF;
  ELSIF new_label IS NOT NULL AND new_label !~* '^decrypt +with +view' THEN
    RAISE EXCEPTION USING ERRCODE = '42602',
      MESSAGE = pg_catalog.format('''%s'' is not a valid label for a table', new_label);
  END IF;

  PERFORM pgsodium._proxy_tce_record('pg_catalog.pg_class'::regclass, rel, subid,
                                     new_label);

  IF objtype = 'column' AND new_label IS NOT NULL THEN
    SELECT * INTO rule FROM pgsodium._proxy_tce_rule m
     WHERE m.attrelid = rel AND m.attnum = subid;
    IF col_type NOT IN ('text', 'bytea') THEN
      RAISE EXCEPTION USING ERRCODE = '0A000',
        MESSAGE = pg_catalog.format(
          'pgsodium-proxy encrypts text and bytea columns only, not %s', col_type);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = rel AND a.attnum = subid AND a.attgenerated <> '')
    THEN
      RAISE EXCEPTION USING ERRCODE = '0A000',
        MESSAGE = pg_catalog.format(
          'pgsodium-proxy cannot encrypt generated column %s: the database computes '
          'its value, and would store it in plaintext', column_name);
    END IF;
    IF rule.key_id IS NULL AND rule.key_id_column IS NULL THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = 'label names no key: expected ENCRYPT WITH KEY ID <uuid> or '
                  'ENCRYPT WITH KEY COLUMN <column>';
    END IF;
    IF rule.key_id IS NOT NULL THEN
      SELECT k.key_type::text INTO key_type
        FROM pgsodium.get_key_by_id(rule.key_id::uuid) k;
      IF key_type IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
          MESSAGE = pg_catalog.format('no valid key with id %s', rule.key_id);
      ELSIF key_type <> 'aead-det' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
          MESSAGE = pg_catalog.format('key %s is a %s key, not aead-det', rule.key_id,
                                      key_type);
      END IF;
    END IF;
    PERFORM pgsodium._proxy_tce_check_column(rel, rule.key_id_column,
                                             ARRAY['uuid'], 'key column');
    PERFORM pgsodium._proxy_tce_check_column(rel, rule.nonce_column,
                                             ARRAY['bytea'], 'nonce column');
    FOREACH ad IN ARRAY coalesce(
        pg_catalog.string_to_array(rule.associated_columns, ','), '{}') LOOP
      PERFORM pgsodium._proxy_tce_check_column(rel, pg_catalog.btrim(ad),
        ARRAY['text', 'character varying', 'smallint', 'integer', 'bigint', 'uuid',
              'boolean'], 'associated data column');
    END LOOP;
  END IF;

  -- An encrypted column cannot be the associated data or nonce of one (itself
  -- included): the proxy encrypts each with the other's plaintext, where
  -- pgsodium's triggers, run one after the other, would use a ciphertext; the
  -- value would not decrypt through the view.
  IF objtype = 'column' THEN
    SELECT d.attname, m.attname INTO dependency, dependent
      FROM pgsodium._proxy_tce_rule m
      JOIN pgsodium._proxy_tce_rule d ON d.attrelid = m.attrelid
     WHERE m.attrelid = rel
       AND (d.attname::text = m.nonce_column
            OR d.attname::text IN (
                 SELECT pg_catalog.btrim(x) FROM pg_catalog.unnest(
                   pg_catalog.string_to_array(m.associated_columns, ',')) AS x))
     ORDER BY m.attnum, d.attnum
     LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION USING ERRCODE = '0A000',
        MESSAGE = pg_catalog.format('pgsodium-proxy cannot use encrypted column %s '
          'as associated data or nonce of %s', dependency, dependent);
    END IF;
  END IF;

  IF pgsodium._proxy_tce_auto() THEN
    PERFORM pgsodium._proxy_tce_regenerate(rel);
  ELSE
    RAISE NOTICE 'skipping pgsodium mask regeneration due to false pgsodium.enable_event_trigger';
  END IF;
END
$set_label$;

-- A generated column (GENERATED ALWAYS AS ... STORED) is computed by the database
-- from other columns: the proxy never sees its value in an INSERT, and an UPDATE
-- of a column it is computed from would change it unseen, leaving the ciphertext
-- that depends on it undecryptable (or, for the encrypted column itself, the
-- database would store plaintext).
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_check_column(
  rel oid, column_name text, allowed text[], what text)
  RETURNS void LANGUAGE plpgsql STABLE AS $check$
DECLARE
  col_type text;
  base_type text;
  generated "char";
BEGIN
  IF column_name IS NULL THEN
    RETURN;
  END IF;
  -- The type without its modifier decides (varchar(10) is varchar: its text is
  -- the stored value's); the message names the column's type as it is declared.
  SELECT pg_catalog.format_type(a.atttypid, a.atttypmod),
         pg_catalog.format_type(a.atttypid, NULL), a.attgenerated
    INTO col_type, base_type, generated
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = rel AND a.attname = column_name AND a.attnum > 0
     AND NOT a.attisdropped;
  IF col_type IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '42703',
      MESSAGE = pg_catalog.format('%s "%s" does not exist', what, column_name);
  END IF;
  IF generated <> '' THEN
    RAISE EXCEPTION USING ERRCODE = '0A000',
      MESSAGE = pg_catalog.format(
        'pgsodium-proxy cannot use generated column %s as the %s of an encrypted '
        'column: the database computes its value, which the proxy must see to '
        'encrypt', column_name, what),
      HINT = 'Use a column the client writes, or drop its expression '
             '(ALTER TABLE ... ALTER COLUMN ... DROP EXPRESSION).';
  END IF;
  IF NOT base_type = ANY (allowed) THEN
    RAISE EXCEPTION USING ERRCODE = '0A000',
      MESSAGE = pg_catalog.format('pgsodium-proxy does not support %s %s of type %s',
                                  CASE WHEN what ~ '^[aeiou]' THEN 'an' ELSE 'a' END,
                                  what, col_type);
  END IF;
END
$check$;

-- Writes the label row as the caller. Row security lets a role write only the
-- labels of the tables it owns (as SECURITY LABEL requires), and role labels only
-- with CREATEROLE.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_record(
  class_oid oid, object_oid oid, sub_id integer, new_label text)
  RETURNS void LANGUAGE plpgsql AS $record$
BEGIN
  PERFORM pgsodium._proxy_tce_rebind();
  IF new_label IS NULL THEN
    DELETE FROM pgsodium._proxy_label
     WHERE classoid = class_oid AND objoid = object_oid AND objsubid = sub_id;
  ELSIF class_oid = 'pg_catalog.pg_authid'::regclass THEN
    INSERT INTO pgsodium._proxy_label
           (classoid, objoid, objsubid, label, role, bound_oid)
    VALUES (class_oid, object_oid, sub_id, new_label, object_oid::regrole, object_oid)
      ON CONFLICT (classoid, objoid, objsubid) DO UPDATE SET label = EXCLUDED.label;
  ELSE
    INSERT INTO pgsodium._proxy_label
           (classoid, objoid, objsubid, label, relation, column_name, bound_oid)
    VALUES (class_oid, object_oid, sub_id, new_label, object_oid::regclass,
            (SELECT a.attname FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = object_oid AND a.attnum = sub_id AND sub_id > 0),
            object_oid)
      ON CONFLICT (classoid, objoid, objsubid)
      DO UPDATE SET label = EXCLUDED.label, column_name = EXCLUDED.column_name;
  END IF;
END
$record$;

-- pgsodium's update_mask / update_masks.
CREATE OR REPLACE FUNCTION pgsodium.update_mask(target oid, debug boolean DEFAULT false)
  RETURNS void LANGUAGE plpgsql AS $update_mask$
BEGIN
  PERFORM pgsodium._proxy_tce_regenerate(target);
END
$update_mask$;

CREATE OR REPLACE FUNCTION pgsodium.update_masks(debug boolean DEFAULT false)
  RETURNS void LANGUAGE plpgsql AS $update_masks$
DECLARE
  rel oid;
BEGIN
  FOR rel IN
    SELECT DISTINCT m.attrelid FROM pgsodium._proxy_tce_rule m
      JOIN pg_catalog.pg_class c ON c.oid = m.attrelid
     WHERE c.relowner = session_user::regrole
       AND m.attrelid <> 'pgsodium.key'::regclass
  LOOP
    PERFORM pgsodium._proxy_tce_regenerate(rel);
  END LOOP;
END
$update_masks$;

-- What the proxy needs about relations a statement names: for a labelled table or
-- its decrypting view, the table, the view and every column with its rule.
-- Views built on labelled tables or their decrypting views, at any depth (not
-- the decrypting views themselves): the proxy refuses writes through them, whose
-- values it would not see; reads pass as written.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_dependents()
  RETURNS TABLE (oid oid, base oid) LANGUAGE sql STABLE AS $dependents$
  WITH RECURSIVE base AS (
    SELECT DISTINCT m.attrelid AS oid FROM pgsodium._proxy_tce_rule m
    UNION
    SELECT DISTINCT pgsodium._proxy_tce_view_oid(m.view_name)
      FROM pgsodium._proxy_tce_rule m
  ), found (oid, base) AS (
    SELECT b.oid, b.oid FROM base b WHERE b.oid IS NOT NULL
    UNION
    SELECT r.ev_class, f.base
      FROM found f
      JOIN pg_catalog.pg_depend d
        ON d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = f.oid
       AND d.classid = 'pg_catalog.pg_rewrite'::regclass
      JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
     WHERE r.ev_class <> f.oid
  )
  SELECT f.oid, f.base FROM found f WHERE f.oid NOT IN (SELECT b.oid FROM base b)
$dependents$;

-- A labelled table's partitions and inheritance children, at any depth (itself
-- not included): they take its rules, by column name.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_children(parent oid)
  RETURNS SETOF oid LANGUAGE sql STABLE AS $children$
  WITH RECURSIVE down (oid) AS (
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = parent
    UNION
    SELECT i.inhrelid FROM down d JOIN pg_catalog.pg_inherits i ON i.inhparent = d.oid
  )
  SELECT oid FROM down
$children$;

-- A partition or inheritance child of a labelled table has its rules, by column
-- name: its rows are written as the table's, and its columns may stand in
-- another order.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_rules(names text[])
  RETURNS TABLE (name text, rules json) LANGUAGE sql STABLE AS $rules$
  WITH named AS (
    SELECT n AS name, pg_catalog.to_regclass(n) AS oid
      FROM pg_catalog.unnest(names) AS n
  ), labelled AS (
    SELECT DISTINCT m.attrelid, m.view_name,
           pgsodium._proxy_tce_view_oid(m.view_name) AS view_oid
      FROM pgsodium._proxy_tce_rule m
  ), targets AS (
    SELECT d.name, l.attrelid, l.view_name,
           CASE WHEN d.oid = l.view_oid THEN 'view' ELSE 'table' END AS kind,
           CASE WHEN d.oid = l.view_oid THEN l.attrelid ELSE d.oid END AS rel
      FROM named d
      JOIN labelled l
        ON d.oid = l.attrelid OR d.oid = l.view_oid
        OR d.oid IN (SELECT pgsodium._proxy_tce_children(l.attrelid))
  )
  SELECT d.name, pg_catalog.json_build_object(
           'kind', 'dependent',
           'table', pg_catalog.format('%I.%I', n.nspname, c.relname),
           'view', '', 'columns', '[]'::json)
    FROM named d
    JOIN pg_catalog.pg_class c ON c.oid = d.oid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE d.oid IN (SELECT x.oid FROM pgsodium._proxy_tce_dependents() x)
  UNION ALL
  SELECT t.name, pg_catalog.json_build_object(
           'kind', t.kind,
           'table', pg_catalog.format('%I.%I', n.nspname, c.relname),
           'view', t.view_name,
           'columns', (
             SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                      'name', a.attname,
                      'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                      'key_id', m.key_id, 'key_column', m.key_id_column,
                      'associated', m.associated_columns, 'nonce', m.nonce_column,
                      'encrypted', m.attrelid IS NOT NULL,
                      'generated', a.attgenerated <> '') ORDER BY a.attnum)
               FROM pg_catalog.pg_attribute a
               LEFT JOIN pgsodium._proxy_tce_rule m
                 ON m.attrelid = t.attrelid AND m.attname = a.attname
              WHERE a.attrelid = t.rel AND a.attnum > 0 AND NOT a.attisdropped))
    FROM targets t
    JOIN pg_catalog.pg_class c ON c.oid = t.rel
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
$rules$;

-- Unqualified names of labelled tables and their views: the proxy's cheap check.
-- A schema that pg_dump is restoring has its functions in any order: until it is
-- whole there are no labels (its data, labels included, comes after). The
-- exception block is a subtransaction, so the client's transaction lives on.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_names()
  RETURNS SETOF text LANGUAGE plpgsql STABLE AS $names$
BEGIN
  RETURN QUERY
    SELECT DISTINCT c.relname::text
      FROM pgsodium._proxy_tce_rule m JOIN pg_catalog.pg_class c ON c.oid = m.attrelid
    UNION
    SELECT DISTINCT v.relname::text
      FROM pgsodium._proxy_tce_rule m
      JOIN pg_catalog.pg_class v ON v.oid = pgsodium._proxy_tce_view_oid(m.view_name)
    UNION
    SELECT DISTINCT p.relname::text
      FROM (SELECT DISTINCT attrelid FROM pgsodium._proxy_tce_rule) m,
           pgsodium._proxy_tce_children(m.attrelid) AS t(oid)
      JOIN pg_catalog.pg_class p ON p.oid = t.oid
    UNION
    SELECT DISTINCT c.relname::text
      FROM pgsodium._proxy_tce_dependents() x
      JOIN pg_catalog.pg_class c ON c.oid = x.oid;
EXCEPTION WHEN undefined_function OR undefined_table OR undefined_object THEN
  RETURN;
END
$names$;

-- A fingerprint of every label's rules: a statement prepared under other labels
-- is prepared again before it runs (proxy/intercept.py).
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_version()
  RETURNS text LANGUAGE plpgsql STABLE AS $version$
BEGIN
  RETURN (SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(
            pg_catalog.concat_ws(':', m.attrelid, m.attnum, m.col_description,
                                 m.view_name),
            ',' ORDER BY m.attrelid, m.attnum), ''))
            FROM pgsodium._proxy_tce_rule m);
EXCEPTION WHEN undefined_function OR undefined_table OR undefined_object THEN
  RETURN '';
END
$version$;

-- A value the proxy encrypted for `resolved`, the labelled table a name of a
-- multi-statement Query message named before the message ran; `written` is that
-- name as the client wrote it, resolved by PostgreSQL when the statement holding
-- it is analysed, after the statements before it ran. Another table then (one of
-- them changed search_path, through an operator, a cast, a trigger, ...): the
-- statement fails, and nothing is written where the labels were not applied.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_written(
  value anyelement, written regclass, resolved regclass)
  RETURNS anyelement LANGUAGE plpgsql IMMUTABLE AS $written$
BEGIN
  IF written IS DISTINCT FROM resolved THEN
    RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
      MESSAGE = pg_catalog.format(
        'pgsodium-proxy cannot write %s: the name resolves to another table than '
        'the one whose labels were applied, %s, since a statement before it in '
        'the same Query message changed search_path; send it as a Query of its own',
        (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
           FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = written),
        (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
           FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = resolved));
  END IF;
  RETURN value;
END
$written$;

-- pg_dump sets restrict_nonsystem_relation_kind = 'view' (PostgreSQL 15.8 and
-- later minors): the views behind these two, which the proxy calls before the
-- client's statements, must stay readable in such a session.
DO $restrict$
BEGIN
  IF pg_catalog.current_setting('restrict_nonsystem_relation_kind', true)
     IS NOT NULL THEN
    ALTER FUNCTION pgsodium._proxy_tce_names()
      SET restrict_nonsystem_relation_kind = '';
    ALTER FUNCTION pgsodium._proxy_tce_rules(text[])
      SET restrict_nonsystem_relation_kind = '';
    ALTER FUNCTION pgsodium._proxy_tce_version()
      SET restrict_nonsystem_relation_kind = '';
  END IF;
END
$restrict$;

-- ALTER TABLE on a labelled table regenerates its view and guard (pgsodium's
-- trg_mask_update), unless pgsodium.enable_event_trigger is off. Event triggers
-- need a superuser: without one the proxy regenerates only on SECURITY LABEL and
-- update_mask(s).
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_ddl_apply(objids oid[])
  RETURNS void LANGUAGE plpgsql AS $ddl_apply$
DECLARE
  target oid;
BEGIN
  IF NOT pgsodium._proxy_tce_auto() THEN
    RAISE NOTICE 'skipping pgsodium mask regeneration due to false pgsodium.enable_event_trigger';
    RETURN;
  END IF;
  FOREACH target IN ARRAY objids LOOP
    IF EXISTS (SELECT FROM pgsodium._proxy_tce_rule m WHERE m.attrelid = target) THEN
      PERFORM pgsodium._proxy_tce_regenerate(target);
    END IF;
  END LOOP;
END
$ddl_apply$;

CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_ddl() RETURNS event_trigger
  LANGUAGE plpgsql AS $ddl$
BEGIN
  PERFORM pgsodium._proxy_tce_ddl_apply(ARRAY(
    SELECT objid FROM pg_catalog.pg_event_trigger_ddl_commands()
     WHERE classid = 'pg_catalog.pg_class'::regclass));
END
$ddl$;

-- pgsodium's own name for it (its event trigger function), doing the same.
CREATE OR REPLACE FUNCTION pgsodium.trg_mask_update() RETURNS event_trigger
  LANGUAGE plpgsql AS $trg_mask_update$
BEGIN
  PERFORM pgsodium._proxy_tce_ddl_apply(ARRAY(
    SELECT objid FROM pg_catalog.pg_event_trigger_ddl_commands()
     WHERE classid = 'pg_catalog.pg_class'::regclass));
END
$trg_mask_update$;

-- pgsodium's other TCE functions, with its signatures. The proxy encrypts writes
-- itself and generates no per-column encryption triggers, so these return or do
-- what pgsodium's would in terms of the proxy's own machinery.
CREATE OR REPLACE FUNCTION pgsodium.create_mask_view(
  relid oid, subid integer, debug boolean DEFAULT false)
  RETURNS void LANGUAGE plpgsql AS $create_mask_view$
BEGIN
  PERFORM pgsodium._proxy_tce_regenerate(relid);
END
$create_mask_view$;

-- pgsodium's legacy form (its pgsodium_masks views are unused): the same view.
CREATE OR REPLACE FUNCTION pgsodium.create_mask_view(relid oid, debug boolean DEFAULT false)
  RETURNS void LANGUAGE plpgsql AS $create_mask_view_legacy$
BEGIN
  PERFORM pgsodium._proxy_tce_regenerate(relid);
END
$create_mask_view_legacy$;

-- The select list of the decrypting view.
CREATE OR REPLACE FUNCTION pgsodium.decrypted_columns(relid oid)
  RETURNS text LANGUAGE sql AS $decrypted_columns$
  SELECT pg_catalog.string_agg(
           pg_catalog.quote_ident(a.attname)
           || CASE WHEN m.attrelid IS NULL THEN ''
                   ELSE ', ' || pgsodium._proxy_tce_decrypted(m) END,
           ', ' ORDER BY a.attnum)
    FROM pg_catalog.pg_attribute a
    LEFT JOIN pgsodium._proxy_tce_rule m
      ON m.attrelid = a.attrelid AND m.attnum = a.attnum
   WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped
$decrypted_columns$;

-- `c1::text || c2::text`, or '' without associated columns; `new.` before each
-- when the second argument is true (a trigger body).
CREATE OR REPLACE FUNCTION pgsodium.quote_assoc(text, boolean DEFAULT false)
  RETURNS text LANGUAGE sql AS $quote_assoc$
  SELECT coalesce(pg_catalog.string_agg(
           CASE WHEN $2 THEN 'new.' ELSE '' END
           || pg_catalog.quote_ident(pg_catalog.btrim(c)) || '::text', ' || '), '''''')
    FROM pg_catalog.unnest(pg_catalog.string_to_array($1, ',')) AS c
$quote_assoc$;

-- What pgsodium's trigger would assign to one encrypted column (for reading: the
-- proxy performs this encryption itself and installs no such trigger).
CREATE OR REPLACE FUNCTION pgsodium.encrypted_column(relid oid, m record)
  RETURNS text LANGUAGE plpgsql AS $encrypted_column$
DECLARE
  col text := pg_catalog.quote_ident(m.attname);
  key_expr text := CASE WHEN m.key_id_column IS NOT NULL
                        THEN 'new.' || pg_catalog.quote_ident(m.key_id_column)
                        ELSE pg_catalog.quote_literal(m.key_id) END;
  nonce text := CASE WHEN m.nonce_column IS NOT NULL
                     THEN 'new.' || pg_catalog.quote_ident(m.nonce_column)
                     ELSE 'NULL' END;
  ad text := pgsodium.quote_assoc(m.associated_columns, true);
BEGIN
  IF m.format_type = 'text' THEN
    RETURN pg_catalog.format(
      'IF new.%1$s = '''' THEN RAISE EXCEPTION ''Cannot encrypt empty string.''; '
      'END IF; new.%1$s = CASE WHEN new.%1$s IS NULL THEN NULL ELSE CASE WHEN %2$s '
      'IS NULL THEN NULL ELSE pg_catalog.encode(pgsodium.crypto_aead_det_encrypt('
      'pg_catalog.convert_to(new.%1$s, ''utf8''), pg_catalog.convert_to((%3$s)::text, '
      '''utf8''), %2$s::uuid, %4$s), ''base64'') END END;',
      col, key_expr, ad, nonce);
  END IF;
  RETURN pg_catalog.format(
    'IF new.%1$s = ''''::bytea THEN RAISE EXCEPTION ''Cannot encrypt empty bytes.''; '
    'END IF; new.%1$s = CASE WHEN new.%1$s IS NULL THEN NULL ELSE CASE WHEN %2$s '
    'IS NULL THEN NULL ELSE pgsodium.crypto_aead_det_encrypt(new.%1$s, '
    'pg_catalog.convert_to((%3$s)::text, ''utf8''), %2$s::uuid, %4$s) END END;',
    col, key_expr, ad, nonce);
END
$encrypted_column$;

CREATE OR REPLACE FUNCTION pgsodium.encrypted_columns(relid oid)
  RETURNS text LANGUAGE plpgsql AS $encrypted_columns$
DECLARE
  m record;
  body text := '';
BEGIN
  FOR m IN SELECT * FROM pgsodium._proxy_tce_rule r WHERE r.attrelid = relid
            ORDER BY r.attnum LOOP
    body := body || pgsodium.encrypted_column(relid, m) || E'\n';
  END LOOP;
  RETURN body;
END
$encrypted_columns$;

-- pgsodium's mask_columns(oid) selects a column that does not exist and fails;
-- this one returns the rules of the table.
CREATE OR REPLACE FUNCTION pgsodium.mask_columns(source_relid oid)
  RETURNS TABLE (attname name, key_id text, key_id_column text,
                 associated_column text, nonce_column text, format_type text)
  LANGUAGE sql AS $mask_columns$
  SELECT m.attname, m.key_id, m.key_id_column, m.associated_columns, m.nonce_column,
         m.format_type
    FROM pgsodium._proxy_tce_rule m WHERE m.attrelid = source_relid ORDER BY m.attnum
$mask_columns$;

CREATE OR REPLACE FUNCTION pgsodium.has_mask(role regrole, source_name text)
  RETURNS boolean LANGUAGE sql AS $has_mask$
  SELECT EXISTS (SELECT FROM pgsodium._proxy_label_live l
                  WHERE l.classoid = 'pg_catalog.pg_authid'::regclass
                    AND l.objoid = role::oid
                    AND l.label ILIKE 'ACCESS%' || source_name || '%')
$has_mask$;

-- pgsodium's mask_role; the grants are made only where an ACCESS label of the
-- role names the table and the caller owns it (_proxy_tce_grant_access).
CREATE OR REPLACE FUNCTION pgsodium.mask_role(
  masked_role regrole, source_name text, view_name text)
  RETURNS void LANGUAGE plpgsql AS $mask_role$
BEGIN
  PERFORM pgsodium._proxy_tce_grant_access(masked_role, source_name::regclass,
                                           view_name);
END
$mask_role$;

-- pgsodium encrypts pgsodium.key's raw keys with this trigger; the proxy does it
-- in create_key, and installs no such trigger.
CREATE OR REPLACE FUNCTION pgsodium.key_encrypt_secret_raw_key()
  RETURNS trigger LANGUAGE plpgsql AS $key_encrypt_secret_raw_key$
BEGIN
  RAISE EXCEPTION USING ERRCODE = '0A000',
    MESSAGE = 'pgsodium.key_encrypt_secret_raw_key() must be called through '
              'pgsodium-proxy (raw keys are encrypted by create_key there)';
END
$key_encrypt_secret_raw_key$;

-- Suspend or resume the regeneration on ALTER TABLE (pgsodium's event trigger).
CREATE OR REPLACE FUNCTION pgsodium.disable_security_label_trigger()
  RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $disable$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger
              WHERE evtname = 'pgsodium_proxy_trg_mask_update') THEN
    ALTER EVENT TRIGGER pgsodium_proxy_trg_mask_update DISABLE;
  END IF;
END
$disable$;

CREATE OR REPLACE FUNCTION pgsodium.enable_security_label_trigger()
  RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $enable$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_event_trigger
              WHERE evtname = 'pgsodium_proxy_trg_mask_update') THEN
    ALTER EVENT TRIGGER pgsodium_proxy_trg_mask_update ENABLE;
  END IF;
END
$enable$;

-- A dropped table or column takes its labels with it (as pg_seclabel's rows go),
-- so no later object that is given the same oid inherits them. As the owner: at
-- sql_drop the object is gone, so the row policy could no longer tell its owner.
CREATE OR REPLACE FUNCTION pgsodium._proxy_tce_drop() RETURNS event_trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $drop$
BEGIN
  DELETE FROM pgsodium._proxy_label l
   USING pg_catalog.pg_event_trigger_dropped_objects() d
   WHERE d.classid = 'pg_catalog.pg_class'::regclass
     AND l.classoid = 'pg_catalog.pg_class'::regclass
     AND coalesce(l.relation::oid, l.objoid) = d.objid
     AND (d.objsubid = 0 OR l.objsubid = d.objsubid);
END
$drop$;

DO $event$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = current_user AND rolsuper)
     AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                      WHERE evtname = 'pgsodium_proxy_label_drop') THEN
    CREATE EVENT TRIGGER pgsodium_proxy_label_drop ON sql_drop
      EXECUTE FUNCTION pgsodium._proxy_tce_drop();
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = current_user AND rolsuper)
     AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                      WHERE evtname = 'pgsodium_proxy_trg_mask_update') THEN
    CREATE EVENT TRIGGER pgsodium_proxy_trg_mask_update ON ddl_command_end
      WHEN TAG IN ('ALTER TABLE')
      EXECUTE FUNCTION pgsodium._proxy_tce_ddl();
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger
                  WHERE evtname IN ('pgsodium_proxy_label_drop',
                                    'pgsodium_proxy_trg_mask_update')) THEN
    RAISE NOTICE USING
      MESSAGE = pg_catalog.format('pgsodium-proxy: role %s is not a superuser, so '
        'no event triggers were installed: ALTER TABLE does not regenerate a '
        'labelled table''s decrypting view, and dropping a labelled column or '
        'table keeps its labels', current_user),
      HINT = 'Run init as a superuser to install them.';
  END IF;
END
$event$;
