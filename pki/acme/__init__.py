"""ACME (RFC 8555) server domain: JWS verification, nonces, accounts, orders, challenges."""
