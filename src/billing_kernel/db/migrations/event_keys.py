"""What migrations 0046 and 0047 share: the trigger that keeps `usage_event_keys` whole while
kernels of the earlier version write `usage_events` alone (0046 adds it, 0047 drops it, and
0047's downgrade puts it back)."""


def keep_keys_function(*, indexed: bool) -> str:
    """The trigger's function: each event written to `usage_events` adds its key, each
    deleted takes it back. `indexed`: the keys' primary key exists, and a key already there
    (a kernel of this version wrote it before its event) is skipped; before it exists no
    key is there twice, as 0046's copy makes sure."""
    skip = "ON CONFLICT (org_id, idempotency_key) DO NOTHING" if indexed else ""
    return f"""
    CREATE OR REPLACE FUNCTION usage_event_key_kept() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO usage_event_keys (org_id, idempotency_key, occurred_at)
            VALUES (NEW.org_id, NEW.idempotency_key, NEW.occurred_at) {skip};
        ELSE
            DELETE FROM usage_event_keys
            WHERE org_id = OLD.org_id AND idempotency_key = OLD.idempotency_key;
        END IF;
        RETURN NULL;
    END $$
    """


KEEP_KEYS_TRIGGER = (
    "CREATE TRIGGER usage_event_key_kept AFTER INSERT OR DELETE ON usage_events "
    "FOR EACH ROW EXECUTE FUNCTION usage_event_key_kept()"
)

DROP_KEEP_KEYS = (
    "DROP TRIGGER IF EXISTS usage_event_key_kept ON usage_events",
    "DROP FUNCTION IF EXISTS usage_event_key_kept()",
)
