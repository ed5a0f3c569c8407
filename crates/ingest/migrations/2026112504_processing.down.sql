DROP POLICY operator_read ON ingest.messages;
REVOKE UPDATE (processing, processing_error, processed_at, application_ack_code, application_acked_at)
    ON ingest.messages FROM tenet_app;
DROP INDEX ingest.messages_pending_by_order_key;
ALTER TABLE ingest.messages
    DROP COLUMN processing,
    DROP COLUMN processing_error,
    DROP COLUMN processed_at,
    DROP COLUMN order_key,
    DROP COLUMN application_ack_type,
    DROP COLUMN reply_to,
    DROP COLUMN application_ack_code,
    DROP COLUMN application_acked_at;
DROP TYPE ingest.processing_state;
