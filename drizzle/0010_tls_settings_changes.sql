-- Changes to the TLS settings (the Certificates page of any node) are announced on the same
-- channel as access changes, with the table's name: every node applies them to its own
-- TLS listeners, as the node where the change was made does.
CREATE TRIGGER tls_settings_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tls_settings
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
