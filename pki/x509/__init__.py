"""Pure functions over ``cryptography``: names, CSR checks, extensions and certificate builders."""
