CREATE TABLE "tls_settings" (
	"id" integer PRIMARY KEY NOT NULL,
	"ca_pem" text,
	"cert_pem" text,
	"key_sealed" text,
	"enabled" boolean DEFAULT false NOT NULL,
	"require_client_cert" boolean DEFAULT false NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tls_settings_one_row" CHECK ("tls_settings"."id" = 1)
);
--> statement-breakpoint
ALTER TABLE "group_rules" DROP CONSTRAINT "group_rules_match_by_check";--> statement-breakpoint
ALTER TABLE "group_rules" DROP CONSTRAINT "group_rules_target_check";--> statement-breakpoint
ALTER TABLE "clients" ADD COLUMN "cert_fingerprint" text;--> statement-breakpoint
CREATE UNIQUE INDEX "clients_cert_fingerprint_key" ON "clients" USING btree ("cert_fingerprint");--> statement-breakpoint
ALTER TABLE "clients" ADD CONSTRAINT "clients_auth_type_check" CHECK (("clients"."auth_type" = 'password' and "clients"."cert_fingerprint" is null) or ("clients"."auth_type" in ('certificate', 'certificate_password') and "clients"."cert_fingerprint" is not null));--> statement-breakpoint
ALTER TABLE "group_rules" ADD CONSTRAINT "group_rules_match_by_check" CHECK ("group_rules"."match_by" in ('client', 'client_id', 'certificate'));--> statement-breakpoint
ALTER TABLE "group_rules" ADD CONSTRAINT "group_rules_target_check" CHECK (("group_rules"."match_by" = 'client' and "group_rules"."client_id" is not null) or ("group_rules"."match_by" in ('client_id', 'certificate') and "group_rules"."client_id" is null));