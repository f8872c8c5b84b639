"""Just-in-time access: people request a ``requires_approval`` rule, others approve it.

``store`` is the SQLite file the gateway and ``phigate access`` share; ``watcher`` is the
gateway's side (grants for the policy hook, events for the journal and the alert sinks);
``cli`` and ``identity`` are ``phigate access request|list|approve|deny|revoke``.
"""
