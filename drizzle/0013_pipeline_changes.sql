-- Changes to pipelines and their topic mappings are announced on the access-change channel
-- with the table's name, whoever makes them: every node reloads its mappings and pipelines
-- at once (no deploy step). The outbox and the dead letters announce nothing.
CREATE TRIGGER pipelines_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pipelines
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
--> statement-breakpoint
CREATE TRIGGER pipeline_mappings_change
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pipeline_mappings
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_announce_access_change();
