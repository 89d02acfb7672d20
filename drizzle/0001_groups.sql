CREATE TABLE "group_rule_changes" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "group_rule_changes_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"summary" text NOT NULL,
	"details" text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "group_rule_changes_created_idx" ON "group_rule_changes" USING btree ("created_at");--> statement-breakpoint
ALTER TABLE "group_rules" ADD CONSTRAINT "group_rules_target_check" CHECK (("group_rules"."match_by" = 'client' and "group_rules"."client_id" is not null) or ("group_rules"."match_by" = 'client_id' and "group_rules"."client_id" is null));