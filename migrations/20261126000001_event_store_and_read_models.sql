-- The event store, in the layout postgres-es 0.5 reads and writes, plus the time each event was recorded.
CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 0),
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    payload        json NOT NULL,
    metadata       json NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- How far each projection has applied each aggregate's stream: updates at or below it are skipped.
CREATE TABLE projection_checkpoints (
    projection     text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

CREATE TABLE organizations (
    organization_id     uuid PRIMARY KEY,
    name                text NOT NULL,
    org_id_auth_enabled boolean NOT NULL
);

CREATE TABLE projects (
    project_id           uuid PRIMARY KEY,
    organization_id      uuid NOT NULL,
    name                 text NOT NULL,
    url                  text,
    repository_urls      text[] NOT NULL,
    azure_project_id     text,
    azure_repository_ids text[] NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX projects_organization_name ON projects (organization_id, lower(name));

CREATE TABLE releases (
    release_id      uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    project_id      uuid NOT NULL,
    name            text NOT NULL,
    status          text NOT NULL,
    build_count     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    archived_at     timestamptz
);
CREATE INDEX releases_by_project ON releases (organization_id, project_id, status, created_at DESC, release_id DESC);
CREATE INDEX releases_by_organization ON releases (organization_id, created_at DESC, release_id DESC);

-- Every build Lathe received, one row each. A build that waited in the queue has a queue_status; a build that is
-- in a release has a release_id. The queue and a release's builds are two indexed slices of this one table.
CREATE TABLE builds (
    build_id                   uuid PRIMARY KEY,
    organization_id            uuid NOT NULL,
    source                     text NOT NULL,
    source_key                 text NOT NULL,
    build_name                 text NOT NULL,
    project_id                 uuid,
    branch                     text,
    commit_sha                 text,
    pull_request_number        bigint,
    pull_request_repository_id text,
    url                        text,
    result                     text,
    received_at                timestamptz NOT NULL,
    queue_status               text,
    queue_reason               text,
    rejection_reason           text,
    resolved_at                timestamptz,
    release_id                 uuid,
    added_to_release_at        timestamptz,
    tests_total                bigint NOT NULL DEFAULT 0,
    tests_passed               bigint NOT NULL DEFAULT 0,
    tests_failed               bigint NOT NULL DEFAULT 0,
    tests_skipped              bigint NOT NULL DEFAULT 0
);
CREATE INDEX builds_queue ON builds (organization_id, queue_status, received_at DESC, build_id DESC)
    WHERE queue_status IS NOT NULL;
CREATE INDEX builds_by_release ON builds (release_id, added_to_release_at DESC, build_id DESC)
    WHERE release_id IS NOT NULL;

CREATE TABLE api_keys (
    api_key_id      uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    name            text NOT NULL,
    prefix          text NOT NULL,
    key_hash        text NOT NULL UNIQUE,
    scopes          text[] NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    created_at      timestamptz NOT NULL
);
CREATE INDEX api_keys_prefix ON api_keys (prefix);
CREATE INDEX api_keys_organization ON api_keys (organization_id, created_at DESC);
