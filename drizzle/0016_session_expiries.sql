CREATE TABLE "session_expiries" (
	"mqtt_client_id" text PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
