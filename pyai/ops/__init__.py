"""Operations: what an operator sees of the running service (metrics, health, the transfer log)."""
