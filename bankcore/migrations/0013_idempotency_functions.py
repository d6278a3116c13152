"""idempotency_claim() and idempotency_complete(): the Idempotency-Key's claim and completion
(bankcore/idempotency.py) as functions, so their plans are cached per database session and a
transfer's first statement can carry the claim without PostgreSQL parsing and planning an
INSERT inside it on every request.

They run with the caller's rights (the runtime role may already insert and update its keys).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION idempotency_claim(
    p_user uuid, p_key text, p_request_hash text, p_claim_token text,
    p_lease_until timestamptz, p_created_at timestamptz, p_expires_at timestamptz, p_lock bigint
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    claimed bigint;
BEGIN
    -- The advisory lock says "a request with this key is running": try-lock, so a duplicate
    -- learns it at once (NULL: 409) instead of waiting. The row is seen by others only at COMMIT.
    IF NOT pg_try_advisory_xact_lock(p_lock) THEN
        RETURN NULL;
    END IF;
    INSERT INTO bankcore_idempotencykey
        (user_id, key, request_hash, state, claim_token, lease_until, created_at, expires_at)
    VALUES (p_user, p_key, p_request_hash, 'in_progress', p_claim_token, p_lease_until, p_created_at, p_expires_at)
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING id INTO claimed;
    RETURN claimed;  -- NULL: a row with this key exists (the caller looks at it)
END
$$;

CREATE OR REPLACE FUNCTION idempotency_complete(
    p_id bigint, p_claim_token text, p_status integer, p_body jsonb
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE bankcore_idempotencykey
    SET state = 'completed', response_status = p_status, response_body = p_body
    WHERE id = p_id AND claim_token = p_claim_token;
    RETURN FOUND;  -- false: the claim was taken over (its lease ran out)
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS idempotency_claim(uuid, text, text, text, timestamptz, timestamptz, timestamptz, bigint);
DROP FUNCTION IF EXISTS idempotency_complete(bigint, text, integer, jsonb);
"""


class Migration(migrations.Migration):
    dependencies = [("bankcore", "0012_app_config")]

    # A list: each string runs whole, not split into statements (the $$ bodies).
    operations = [migrations.RunSQL([CREATE], [DROP])]
