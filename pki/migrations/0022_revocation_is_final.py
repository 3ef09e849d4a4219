"""A revocation is final (RFC 5280 §5.3.1), also for whoever writes the database: on PostgreSQL
a trigger refuses, for every role, an UPDATE of a revoked certificate that clears its
revocation, moves its revocation date or changes its reason — except a certificateHold, which
may be released or made permanent, and a reason raised to keyCompromise. KMI's own use cases
never do more (pki.revocation); a database writer can no longer un-revoke a certificate.
"""

from django.db import migrations

from pki.migrations._postgresql import on_postgresql

TRIGGER = """
CREATE OR REPLACE FUNCTION kmi_keep_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.revoked_at IS DISTINCT FROM OLD.revoked_at
       OR (NEW.revocation_reason IS DISTINCT FROM OLD.revocation_reason
           AND NEW.revocation_reason IS DISTINCT FROM 'keyCompromise') THEN
        RAISE EXCEPTION 'KMI: changing the revocation (%) of certificate % is refused: a revocation is final',
            OLD.revocation_reason, OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER kmi_certificate_revocation_final BEFORE UPDATE ON pki_certificate
    FOR EACH ROW WHEN (OLD.revoked_at IS NOT NULL AND OLD.revocation_reason <> 'certificateHold')
    EXECUTE FUNCTION kmi_keep_revocation();
"""
DROP_TRIGGER = """
DROP TRIGGER IF EXISTS kmi_certificate_revocation_final ON pki_certificate;
DROP FUNCTION IF EXISTS kmi_keep_revocation();
"""


class Migration(migrations.Migration):
    dependencies = [("pki", "0021_blocklist_append_only")]

    operations = [on_postgresql(TRIGGER, DROP_TRIGGER)]
