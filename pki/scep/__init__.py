"""SCEP (RFC 8894): labels with their RA key, challenge passwords, CMS messages, operations."""
