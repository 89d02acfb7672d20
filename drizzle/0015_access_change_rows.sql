-- Changes to clients are announced with the row ids they touch, so that every node can apply
-- them to what it keeps in memory by reading those rows again, instead of forgetting (or
-- reloading) every client: `clients:<id>,<id>,…`, 500 ids a notification at most (a payload
-- holds 8,000 bytes). Inserts, deletes, and updates of the columns that authentication or the
-- console's lists read (not last_seen_at, written in batches as sessions end) are announced
-- this way; a TRUNCATE still says just `clients` (every client to be read again). Transition
-- tables need one trigger per event.
CREATE OR REPLACE FUNCTION gatehouse_announce_clients(ids integer[]) RETURNS void AS $$
DECLARE
  first integer := 1;
  total integer := coalesce(array_length(ids, 1), 0);
BEGIN
  WHILE first <= total LOOP
    PERFORM pg_notify('gatehouse_access', 'clients:' || array_to_string(ids[first:first + 499], ','));
    first := first + 500;
  END LOOP;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION gatehouse_announce_client_rows() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM gatehouse_announce_clients(ARRAY(SELECT id FROM new_rows ORDER BY id));
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM gatehouse_announce_clients(ARRAY(SELECT id FROM old_rows ORDER BY id));
  ELSE
    PERFORM gatehouse_announce_clients(ARRAY(
      SELECT coalesce(n.id, o.id) FROM new_rows n FULL JOIN old_rows o ON o.id = n.id
      WHERE n.id IS NULL OR o.id IS NULL
        OR (n.username, n.auth_type, n.password_hash, n.cert_fingerprint, n.version, n.name)
           IS DISTINCT FROM (o.username, o.auth_type, o.password_hash, o.cert_fingerprint, o.version, o.name)
      ORDER BY 1));
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
DROP TRIGGER clients_access_change ON clients;
--> statement-breakpoint
CREATE TRIGGER clients_inserted_change
  AFTER INSERT ON clients REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_client_rows();
--> statement-breakpoint
CREATE TRIGGER clients_updated_change
  AFTER UPDATE ON clients REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_client_rows();
--> statement-breakpoint
CREATE TRIGGER clients_deleted_change
  AFTER DELETE ON clients REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_client_rows();
--> statement-breakpoint
CREATE TRIGGER clients_truncated_change
  AFTER TRUNCATE ON clients
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
