"""Rules every layer applies to what clients send: names, JSON text, schemas, times."""
