CREATE TABLE "client_totals" (
	"id" integer PRIMARY KEY NOT NULL,
	"total" integer NOT NULL,
	CONSTRAINT "client_totals_one_row" CHECK ("client_totals"."id" = 1)
);
--> statement-breakpoint
DROP INDEX "clients_name_idx";--> statement-breakpoint
CREATE INDEX "clients_name_id_idx" ON "clients" USING btree (lower("name"),"id");