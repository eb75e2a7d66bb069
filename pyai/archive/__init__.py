"""The archive's rules: ids, write-once, checksums, what HEAD says; no HTTP here."""
