-- Tables for the pgbench ceiling (bench/ceiling.sql), in the benchmark's own database: an event table shaped like
-- the service's `events` (same columns, key and defaults) and a small read model with one secondary index, like
-- the queue's `builds_queue`.
DROP TABLE IF EXISTS bench_events, bench_view;
CREATE TABLE bench_events (LIKE events INCLUDING ALL);
CREATE TABLE bench_view (
    view_id         text PRIMARY KEY,
    organization_id uuid NOT NULL,
    status          text NOT NULL,
    events          bigint NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX bench_view_queue ON bench_view (organization_id, status, updated_at DESC, view_id DESC);
