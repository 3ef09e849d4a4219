"""Key backends: where private keys live. Everything that signs goes through one of these."""

from pki.keys.base import KeyBackend, generate_private_key, key_type_of, signature_hash
from pki.keys.registry import get_backend

__all__ = ["KeyBackend", "generate_private_key", "get_backend", "key_type_of", "signature_hash"]
