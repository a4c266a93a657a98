-- When an endpoint was disabled: events that happened before it are still kept for the
-- endpoint (in its queue, until it is enabled again), even when the worker reads them
-- after the disable; later ones are not. Endpoints disabled before this column existed
-- take their last change as that time.
ALTER TABLE webhook_endpoints ADD COLUMN disabled_at INTEGER;
UPDATE webhook_endpoints SET disabled_at = updated_at WHERE enabled = 0;
