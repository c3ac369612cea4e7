-- Branch filters and retention on projects (read model of BranchFiltersChanged / RetentionPolicyChanged).
ALTER TABLE read.projects ADD COLUMN branch_include text[] NOT NULL DEFAULT '{}';
ALTER TABLE read.projects ADD COLUMN branch_exclude text[] NOT NULL DEFAULT '{}';
ALTER TABLE read.projects ADD COLUMN retention_keep_days integer;
ALTER TABLE read.projects ADD COLUMN retention_keep_last integer;
ALTER TABLE read.projects ADD COLUMN retention_archive_after_days integer;

-- A key's own rate limit (read model of ApiKeyRateLimitChanged); NULL uses the server's default.
ALTER TABLE read.api_keys ADD COLUMN rate_limit_per_minute integer;
ALTER TABLE read.api_keys DROP COLUMN last_used_at;

-- When each key was last used: operational, written in batches, not derived from events (so a rebuild keeps it).
CREATE TABLE api_key_usage (
    api_key_id   uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);

-- Rate limiting (GCRA): per bucket, the theoretical arrival time of the next request. Shared by every process.
CREATE TABLE rate_limits (
    bucket text PRIMARY KEY,
    tat    timestamptz NOT NULL
);

-- Retention finds a project's builds by age.
CREATE INDEX builds_by_project ON read.builds (project_id, received_at DESC, build_id DESC) WHERE project_id IS NOT NULL;
