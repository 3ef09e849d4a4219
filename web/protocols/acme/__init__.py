"""ACME (RFC 8555) HTTP binding over ``pki.acme``."""
