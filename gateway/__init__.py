"""PHIGate: the parts that do I/O and own lifetimes (server, sessions, journal, CLI)."""
