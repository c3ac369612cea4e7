-- Test results of builds (a read model of `TestResultsRecorded`), in upload order per build.
CREATE TABLE test_results (
    test_result_id  uuid PRIMARY KEY,
    build_id        uuid NOT NULL,
    organization_id uuid NOT NULL,
    ordinal         bigint NOT NULL,
    title           text NOT NULL,
    status          text NOT NULL,
    duration_ms     bigint,
    error_message   text,
    priority        integer,
    steps           text,
    tester_notes    text,
    environment     text,
    recorded_at     timestamptz NOT NULL,
    UNIQUE (build_id, ordinal)
);

-- Every delivery to the webhook and ingest endpoints, accepted or not: an operational log, not a projection (it
-- records refused requests, which cause no events). Never holds credentials.
CREATE TABLE deliveries (
    delivery_id     uuid PRIMARY KEY,
    organization_id uuid,
    received_at     timestamptz NOT NULL,
    source          text NOT NULL,
    event_type      text,
    outcome         text NOT NULL,
    http_status     integer NOT NULL,
    message         text NOT NULL,
    build_id        uuid,
    queued_build_id uuid,
    subscription_id text,
    notification_id text,
    event_id        text,
    request_id      text
);
CREATE INDEX deliveries_by_organization ON deliveries (organization_id, received_at DESC, delivery_id DESC);

-- Answers to ingest calls that carried an `Idempotency-Key`, so that a retry gets the first answer.
CREATE TABLE idempotency_keys (
    organization_id uuid NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    text NOT NULL,
    status_code     integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, idempotency_key)
);
