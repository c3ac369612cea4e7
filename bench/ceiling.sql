-- The ceiling: what PostgreSQL on this machine does for the smallest honest version of one webhook delivery,
-- one transaction that appends one event row and upserts one read-model row. Run by bench/run.sh with pgbench
-- (-M prepared) at the webhook phase's concurrency, against bench_events / bench_view (bench/ceiling-setup.sql),
-- with :payload and :metadata set (-D) to a BuildReceived event the service itself wrote in the same run. The
-- event's chain link is a constant: the ceiling leaves out the hashing the service does.
\set n random(1, 9000000000000000000)
BEGIN;
INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash)
    VALUES ('BuildQueue', :client_id::text || '-' || :n::text, 1, 'BuildReceived', '1.0', :payload::json, :metadata::json,
        '0000000000000000000000000000000000000000000000000000000000000000');
INSERT INTO bench_view (view_id, organization_id, status, events, updated_at)
    VALUES (:client_id::text || '-' || :n::text, '00000000-0000-0000-0000-000000000000', 'pending', 1, now())
    ON CONFLICT (view_id) DO UPDATE SET status = EXCLUDED.status, events = bench_view.events + 1,
        updated_at = EXCLUDED.updated_at;
END;
