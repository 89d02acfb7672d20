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
