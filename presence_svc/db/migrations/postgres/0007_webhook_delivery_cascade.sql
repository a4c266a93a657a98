-- A delivery belongs to its endpoint: deleting the endpoint deletes its deliveries, and
-- a delivery for an endpoint deleted a moment earlier (a lane parking what it held, the
-- dispatcher queueing what it read) is refused rather than left behind, never shown yet
-- counted in the backlog. The rows left behind before this are dropped, under a lock
-- that keeps an older worker from adding one between the delete and the constraint.
LOCK TABLE webhook_endpoints, webhook_deliveries IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM webhook_deliveries d
WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.endpoint_id = d.endpoint_id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_endpoint_fk
    FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE;
