CREATE TABLE "pipeline_dead_letters" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "pipeline_dead_letters_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"pipeline_id" integer NOT NULL,
	"message_id" text NOT NULL,
	"order_key" text NOT NULL,
	"topic" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"qos" smallint NOT NULL,
	"retain" boolean NOT NULL,
	"client_row_id" integer,
	"username" text,
	"mqtt_client_id" text,
	"received_at" timestamp (3) with time zone NOT NULL,
	"failed_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"attempts" integer NOT NULL,
	"last_status" integer,
	"last_error" text
);
--> statement-breakpoint
CREATE TABLE "pipeline_mappings" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "pipeline_mappings_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"pipeline_id" integer NOT NULL,
	"position" integer NOT NULL,
	"topic_filter" text NOT NULL,
	"narrow_by" text DEFAULT 'any' NOT NULL,
	"narrow_value" text DEFAULT '' NOT NULL,
	CONSTRAINT "pipeline_mappings_narrow_by_check" CHECK ("pipeline_mappings"."narrow_by" in ('any', 'client', 'username', 'group'))
);
--> statement-breakpoint
CREATE TABLE "pipeline_outbox" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "pipeline_outbox_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"pipeline_id" integer NOT NULL,
	"message_id" text NOT NULL,
	"order_key" text NOT NULL,
	"topic" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"qos" smallint NOT NULL,
	"retain" boolean NOT NULL,
	"client_row_id" integer,
	"username" text,
	"mqtt_client_id" text,
	"received_at" timestamp (3) with time zone NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"not_before" timestamp (3) with time zone,
	"last_status" integer,
	"last_error" text,
	"bytes" integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE "pipelines" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "pipelines_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"kind" text NOT NULL,
	"settings" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"secrets_sealed" text,
	"max_outbox_bytes" bigint NOT NULL,
	"max_age_seconds" integer NOT NULL,
	"overflow" text NOT NULL,
	"version" integer DEFAULT 1 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pipelines_kind_check" CHECK ("pipelines"."kind" in ('webhook', 'tagoio', 'mqtt')),
	CONSTRAINT "pipelines_overflow_check" CHECK ("pipelines"."overflow" in ('drop_oldest', 'drop_newest', 'refuse'))
);
--> statement-breakpoint
ALTER TABLE "pipeline_dead_letters" ADD CONSTRAINT "pipeline_dead_letters_pipeline_id_pipelines_id_fk" FOREIGN KEY ("pipeline_id") REFERENCES "public"."pipelines"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pipeline_mappings" ADD CONSTRAINT "pipeline_mappings_pipeline_id_pipelines_id_fk" FOREIGN KEY ("pipeline_id") REFERENCES "public"."pipelines"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pipeline_outbox" ADD CONSTRAINT "pipeline_outbox_pipeline_id_pipelines_id_fk" FOREIGN KEY ("pipeline_id") REFERENCES "public"."pipelines"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "pipeline_dead_letters_pipeline_idx" ON "pipeline_dead_letters" USING btree ("pipeline_id","id");--> statement-breakpoint
CREATE INDEX "pipeline_mappings_pipeline_idx" ON "pipeline_mappings" USING btree ("pipeline_id","position");--> statement-breakpoint
CREATE INDEX "pipeline_outbox_pipeline_idx" ON "pipeline_outbox" USING btree ("pipeline_id","id");--> statement-breakpoint
CREATE INDEX "pipeline_outbox_held_idx" ON "pipeline_outbox" USING btree ("pipeline_id","order_key","id") WHERE "pipeline_outbox"."not_before" is not null;--> statement-breakpoint
CREATE UNIQUE INDEX "pipelines_name_key" ON "pipelines" USING btree ("name");