"""Sans-I/O codec for the PostgreSQL v3 frontend/backend protocol."""
