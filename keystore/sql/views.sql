-- Views that users build over values the proxy computes (proxy/tce.py, rewriter/
-- views.py): a view outside pgsodium's and vault's schemas whose definition calls a
-- function only the proxy evaluates (a stub here, or one of pgsodium's aggregates),
-- or reads a relation that does (pgsodium.decrypted_key, vault.decrypted_secrets, a
-- TCE decrypting view, another such view), however deep. Read directly, such a
-- view raises the stub's 0A000; read through the proxy, its definition can be
-- evaluated as a subquery. TCE's own decrypting views are TCE's, not listed here.
CREATE OR REPLACE FUNCTION pgsodium._proxy_view_oids()
  RETURNS SETOF oid LANGUAGE sql STABLE AS $view_oids$
  WITH RECURSIVE computed(oid) AS (
    SELECT r.ev_class
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
      JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
     WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
       AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND n.nspname IN ('pgsodium', 'vault')
       AND (p.prokind = 'a'
            OR p.prosrc LIKE '%must be called through pgsodium-proxy%')
    UNION
    SELECT r.ev_class
      FROM computed c
      JOIN pg_catalog.pg_depend d
        ON d.refobjid = c.oid
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
      JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
     WHERE r.ev_class <> c.oid
  )
  SELECT c.oid
    FROM computed c
    JOIN pg_catalog.pg_class v ON v.oid = c.oid
    JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
   WHERE v.relkind = 'v' AND n.nspname NOT IN ('pgsodium', 'vault')
     AND NOT EXISTS (
       SELECT FROM pgsodium._proxy_tce_rule m
        WHERE pgsodium._proxy_tce_view_oid(m.view_name) = c.oid)
$view_oids$;

-- Their unqualified names: the proxy's cheap check, as _proxy_tce_names() is TCE's.
CREATE OR REPLACE FUNCTION pgsodium._proxy_view_names()
  RETURNS SETOF text LANGUAGE sql STABLE AS $view_names$
  SELECT DISTINCT v.relname::text
    FROM pgsodium._proxy_view_oids() o JOIN pg_catalog.pg_class v ON v.oid = o
$view_names$;

-- A view's definition with every name outside pg_catalog schema-qualified, so that
-- it means the same objects wherever the proxy splices it.
CREATE OR REPLACE FUNCTION pgsodium._proxy_view_definition(view oid)
  RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog AS $definition$
  SELECT pg_catalog.pg_get_viewdef(view)
$definition$;

-- Of the relation names a statement reads (as written, resolved by the session's
-- own search_path), those views whose relations the current role would read with
-- its own privileges anyway (security_invoker, or a view it owns): their quoted
-- name, their columns and their definition. A view that runs with another owner's
-- privileges is not listed, and is read by the database as it stands.
CREATE OR REPLACE FUNCTION pgsodium._proxy_views(names text[])
  RETURNS TABLE (name text, qualified text, columns text, definition text)
  LANGUAGE sql STABLE AS $views$
  SELECT d.name,
         pg_catalog.format('%I.%I', n.nspname, v.relname),
         (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', '
                                       ORDER BY a.attnum)
            FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped),
         pgsodium._proxy_view_definition(v.oid)
    FROM (SELECT x AS name, pg_catalog.to_regclass(x) AS oid
            FROM pg_catalog.unnest(names) AS x) d
    JOIN pg_catalog.pg_class v ON v.oid = d.oid
    JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
   WHERE v.oid IN (SELECT pgsodium._proxy_view_oids())
     AND (pg_catalog.pg_get_userbyid(v.relowner) = current_user
          OR coalesce((SELECT pg_catalog.bool_or(pg_catalog.split_part(o, '=', 2)::boolean)
                         FROM pg_catalog.unnest(v.reloptions) AS o
                        WHERE pg_catalog.split_part(o, '=', 1) = 'security_invoker'),
                      false))
$views$;
