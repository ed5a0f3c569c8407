DROP POLICY operator_read ON ingest.messages;
REVOKE UPDATE (processing, processing_error, processed_at) ON ingest.messages FROM tenet_app;
DROP INDEX ingest.messages_pending_by_order_key;
ALTER TABLE ingest.messages
    DROP COLUMN processing,
    DROP COLUMN processing_error,
    DROP COLUMN processed_at,
    DROP COLUMN order_key;
DROP TYPE ingest.processing_state;
