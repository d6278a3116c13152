"""audit_append(): chain and store one audit event in one call, with a cached plan.

Runs every time money moves, so it is a function: one round trip, planned once per
database session. The hash is the one bankcore.audit.chain_hash computes -
sha256(prev_hash || canonical content) - with the content bytes made in Python (they do
not depend on prev_hash) and prev_hash read under the chain head's row lock.
Adding a column to AuditEvent means replacing this function in that migration.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_append(
    p_chain integer, p_content bytea, p_created_at timestamptz, p_actor_id uuid, p_actor_label text,
    p_action text, p_target_type text, p_target_id text, p_ip inet, p_user_agent text,
    p_request_id text, p_details jsonb,
    OUT event_id bigint, OUT prev_hash text, OUT hash text
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT h.last_hash INTO prev_hash FROM bankcore_auditchainhead h WHERE h.id = p_chain FOR UPDATE;
    IF NOT FOUND THEN
        -- First event on this chain: create its head without racing another first writer.
        INSERT INTO bankcore_auditchainhead (id, last_event_id, last_hash)
        VALUES (p_chain, 0, repeat('0', 64)) ON CONFLICT (id) DO NOTHING;
        SELECT h.last_hash INTO STRICT prev_hash FROM bankcore_auditchainhead h WHERE h.id = p_chain FOR UPDATE;
    END IF;
    hash := encode(sha256(convert_to(prev_hash, 'UTF8') || p_content), 'hex');
    INSERT INTO bankcore_auditevent (chain, created_at, actor_id, actor_label, action, target_type, target_id,
                                     ip, user_agent, request_id, details, prev_hash, hash)
    VALUES (p_chain, p_created_at, p_actor_id, p_actor_label, p_action, p_target_type, p_target_id,
            p_ip, p_user_agent, p_request_id, p_details, prev_hash, hash)
    RETURNING id INTO event_id;
    UPDATE bankcore_auditchainhead SET last_event_id = event_id, last_hash = hash WHERE id = p_chain;
END
$$;
"""

DROP = (
    "DROP FUNCTION IF EXISTS audit_append(integer, bytea, timestamptz, uuid, text, text, text, text, inet, text,"
    " text, jsonb);"
)


class Migration(migrations.Migration):
    dependencies = [("bankcore", "0002_audit_chains")]

    # A list: each string runs whole, not split into statements (the $$ bodies).
    operations = [migrations.RunSQL([CREATE], [DROP])]
