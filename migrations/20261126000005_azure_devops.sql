-- A project's Azure DevOps connection (read model of AzureDevOpsConnected / AzureDevOpsDisconnected). No token.
CREATE TABLE read.azure_connections (
    project_id                 uuid PRIMARY KEY,
    organization_id            uuid NOT NULL,
    organization_url           text NOT NULL,
    azure_project              text NOT NULL,
    work_item_type             text NOT NULL,
    mapped_sources             text[] NOT NULL,
    mapped_fields              text[] NOT NULL,
    auto_create_work_items     boolean NOT NULL,
    post_pull_request_comments boolean NOT NULL,
    failure_threshold          integer NOT NULL,
    connected_at               timestamptz NOT NULL
);

-- Work items linked to test results (read model of WorkItemLinked).
ALTER TABLE read.test_results ADD COLUMN work_item_id bigint;
ALTER TABLE read.test_results ADD COLUMN work_item_url text;
-- The latest work item per failing test (by title) of a project: one work item per failing test, not per failure.
CREATE TABLE read.work_item_links (
    project_id   uuid NOT NULL,
    title        text NOT NULL,
    work_item_id bigint NOT NULL,
    url          text NOT NULL,
    linked_at    timestamptz NOT NULL,
    PRIMARY KEY (project_id, title)
);

-- The personal access tokens, encrypted (AES-256-GCM under the server's LATHE_SECRET_KEY). Kept out of the event
-- store on purpose: events are forever and auditors read them.
CREATE TABLE azure_credentials (
    project_id      uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    nonce           bytea NOT NULL,
    ciphertext      bytea NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Durable outbox of calls to Azure DevOps: written in the transaction of the event that causes them, delivered
-- by a worker with retries, ending succeeded or failed with the last error.
CREATE TABLE outbox (
    outbox_id       uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    project_id      uuid NOT NULL,
    kind            text NOT NULL,
    dedupe_key      text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_status     integer,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_by_organization ON outbox (organization_id, status, created_at DESC);
