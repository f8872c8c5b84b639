"""The WORM archive: sealed journal segments, checkpoints and finished recordings in S3
Object Lock, tracked by ``archived`` journal entries and verifiable from the archive alone.

Module map: settings → s3 (the SDK client) → state, uploader (inside the gateway),
service (start-up wiring), verify and cli (``phigate journal verify s3://…``),
prune_guard (``journal prune`` never drops an unconfirmed segment).
"""
