"""KMI's domain: certificate authorities, keys, profiles, issuance and their audit trail."""
