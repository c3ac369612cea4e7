-- Live subscriptions (issue 14): every commit that appends events or logs deliveries tells every listening
-- `lathe serve` process, through PostgreSQL's NOTIFY. A notification is delivered only if its transaction commits,
-- and notifications of different transactions arrive in commit order, in every session: exactly the order and the
-- "committed only" promise the subscriptions make. Statement-level triggers, so that any writer (the group commit,
-- a future one) notifies without knowing about subscribers, and a batch of 64 appends costs one notification.

-- The events: the payload is the appending transaction's id; listeners read that transaction's events by the
-- `events_global_order` index. Identical notifications of one transaction are sent once.
CREATE FUNCTION notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lathe_events', pg_current_xact_id()::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();

-- The delivery log: `organization_id:delivery_id` of the rows of an organization (deliveries nobody could be
-- identified for are shown to no one), comma-separated, at most 100 to a notification (a payload holds less than
-- 8,000 bytes), so that a process reads only the rows of organizations it has subscribers for.
CREATE FUNCTION notify_deliveries_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chunk text;
BEGIN
    FOR chunk IN
        SELECT string_agg(organization_id::text || ':' || delivery_id::text, ',')
        FROM (SELECT organization_id, delivery_id, (row_number() OVER () - 1) / 100 AS part
              FROM new_rows WHERE organization_id IS NOT NULL) numbered
        GROUP BY part ORDER BY part
    LOOP
        PERFORM pg_notify('lathe_deliveries', chunk);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_deliveries_recorded();
