"""``phigate demo``: a throwaway PostgreSQL with synthetic patients behind the gateway."""
