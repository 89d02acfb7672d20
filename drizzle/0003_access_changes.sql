-- Every change to what a CONNECT reads (credentials, groups, permissions, rules) is announced
-- on the channel gatehouse_access, whoever makes it: the console of any node, the admin
-- command, or psql. Nodes keep what CONNECT needs in memory and forget it on this signal.
-- A trigger per statement, not per row; PostgreSQL folds identical notifications of one
-- transaction into one, delivered at commit.
CREATE OR REPLACE FUNCTION gatehouse_announce_access_change() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('gatehouse_access', TG_TABLE_NAME);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
--> statement-breakpoint
CREATE TRIGGER clients_access_change
  AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF username, auth_type, password_hash, version ON clients
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
--> statement-breakpoint
CREATE TRIGGER groups_access_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON groups
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
--> statement-breakpoint
CREATE TRIGGER group_permissions_access_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_permissions
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
--> statement-breakpoint
CREATE TRIGGER group_rules_access_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_rules
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
--> statement-breakpoint
CREATE TRIGGER group_rule_groups_access_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_rule_groups
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
