"""The registry: models and versions, their records, listing, and upkeep (sweep and history)."""
