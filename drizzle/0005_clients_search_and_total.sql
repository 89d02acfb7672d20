-- The number of clients, kept by statement triggers (one update per statement, however
-- many rows it touched): the console shows it on every page, and count(*) over a large
-- table is what made that page slow.
INSERT INTO "client_totals" ("id", "total") SELECT 1, count(*) FROM "clients";
--> statement-breakpoint
CREATE OR REPLACE FUNCTION gatehouse_count_clients() RETURNS trigger AS $$
DECLARE
  delta integer;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE client_totals SET total = 0 WHERE id = 1;
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    SELECT count(*) INTO delta FROM inserted;
  ELSE
    SELECT -count(*) INTO delta FROM deleted;
  END IF;
  IF delta <> 0 THEN
    UPDATE client_totals SET total = total + delta WHERE id = 1;
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER clients_total_insert
  AFTER INSERT ON clients REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_count_clients();
--> statement-breakpoint
CREATE TRIGGER clients_total_delete
  AFTER DELETE ON clients REFERENCING OLD TABLE AS deleted
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_count_clients();
--> statement-breakpoint
CREATE TRIGGER clients_total_truncate
  AFTER TRUNCATE ON clients
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_count_clients();
--> statement-breakpoint
-- Search is a case-insensitive substring of the name or the username. A trigram index
-- (pg_trgm) answers that without reading the table. PostgreSQL ships pg_trgm in its
-- contrib and trusts it (since 13), so a role that may create objects in the database
-- installs it; PGlite has it when it is opened with the extension loaded. Where it
-- cannot be installed, the migration still succeeds and search reads the whole table:
-- same results, slower with a large fleet. A role that may (a superuser, or any role with
-- CREATE on the database) can add it later, with no restart:
--   CREATE EXTENSION pg_trgm;
--   CREATE INDEX clients_search_idx ON clients USING gin ((name || E'\n' || username) gin_trgm_ops);
-- Names and usernames never contain control characters, so a newline between them
-- keeps one index from matching across the two.
DO $$
DECLARE
  trgm_schema name;
BEGIN
  BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): searching clients will read the whole table', SQLERRM;
  END;
  SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
  IF trgm_schema IS NOT NULL THEN
    EXECUTE format(
      'CREATE INDEX IF NOT EXISTS clients_search_idx ON clients USING gin ((name || E''\n'' || username) %I.gin_trgm_ops)',
      trgm_schema);
  END IF;
END;
$$;
