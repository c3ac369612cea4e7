-- 1. A global order for the event store. Sequence values are handed out before commit, so `position` alone can
--    show a later event before an earlier one commits. Readers order by (transaction_id, position) and read only
--    transactions older than every running one (`pg_snapshot_xmin(pg_current_snapshot())`): that order never gains
--    an entry behind a reader's cursor.
ALTER TABLE events ADD COLUMN position bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE events ADD COLUMN transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id();
-- The organization an event belongs to (from its metadata), so that auditors see their own.
ALTER TABLE events ADD COLUMN organization_id uuid;
-- Tamper evidence: each event's link in its stream's SHA-256 chain (see `projections::audit::link`).
ALTER TABLE events ADD COLUMN hash text;
CREATE UNIQUE INDEX events_global_order ON events (transaction_id, position);
CREATE INDEX events_by_organization ON events (organization_id, transaction_id, position);

-- Chain what an earlier version stored without a chain, with the same link as the service computes.
CREATE FUNCTION pg_temp.field(value text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT octet_length(value)::text || ':' || value $$;
DO $$
DECLARE
    e record;
    previous text := '';
    stream text := NULL;
BEGIN
    FOR e IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence LOOP
        IF stream IS DISTINCT FROM e.aggregate_type || '/' || e.aggregate_id THEN
            previous := '';
            stream := e.aggregate_type || '/' || e.aggregate_id;
        END IF;
        previous := encode(sha256(convert_to(
            pg_temp.field(previous) || pg_temp.field(e.aggregate_type) || pg_temp.field(e.aggregate_id)
            || pg_temp.field(e.sequence::text) || pg_temp.field(e.event_type) || pg_temp.field(e.event_version)
            || pg_temp.field(e.payload::text) || pg_temp.field(e.metadata::text), 'UTF8')), 'hex');
        UPDATE events SET hash = previous
        WHERE aggregate_type = e.aggregate_type AND aggregate_id = e.aggregate_id AND sequence = e.sequence;
    END LOOP;
END $$;
ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

-- 2. Read models move to their own schema, so that `lathe replay` can build new tables aside and swap them in.
--    The service reads with `search_path = read, public`; migrations name `read.` explicitly.
CREATE SCHEMA read;
ALTER TABLE organizations SET SCHEMA read;
ALTER TABLE projects SET SCHEMA read;
ALTER TABLE releases SET SCHEMA read;
ALTER TABLE builds SET SCHEMA read;
ALTER TABLE test_results SET SCHEMA read;
ALTER TABLE api_keys SET SCHEMA read;
ALTER TABLE projection_checkpoints SET SCHEMA read;
