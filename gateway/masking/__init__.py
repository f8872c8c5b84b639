"""Live masking: results of masked sessions with identifiers masked (``hook.MaskingHook``).

``settings`` and ``keys`` (the hash key) are read by the config loader, so this package
imports nothing at import time (the hook imports the config).
"""
