-- Retired projects (ProjectArchived / ProjectRestored) and build retention taken from Azure DevOps
-- (RetentionSyncChanged, AzureRetentionSynced, AzureRetentionSyncFailed): read model columns of `projects`.
ALTER TABLE read.projects ADD COLUMN archived_at timestamptz;
ALTER TABLE read.projects ADD COLUMN archive_reason text;
ALTER TABLE read.projects ADD COLUMN retention_sync boolean NOT NULL DEFAULT false;
ALTER TABLE read.projects ADD COLUMN azure_purge_runs_days integer;
ALTER TABLE read.projects ADD COLUMN azure_purge_pull_request_runs_days integer;
ALTER TABLE read.projects ADD COLUMN azure_retain_runs_per_protected_branch integer;
ALTER TABLE read.projects ADD COLUMN azure_retention_synced_at timestamptz;
ALTER TABLE read.projects ADD COLUMN azure_retention_error text;
ALTER TABLE read.projects ADD COLUMN azure_retention_failed_at timestamptz;
