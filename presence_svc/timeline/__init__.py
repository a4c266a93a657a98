"""Peak concurrent viewers per artifact: the per-minute timeline the presence writers keep
in Redis (``lua/lib/timeline.lua``), its hourly rollup into the database, and the read
that joins both (``GET /v1/artifacts/{id}/timeline``)."""
