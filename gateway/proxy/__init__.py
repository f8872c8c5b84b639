"""The proxy core: accepting, start-up, authentication, the upstream, the relay, cancels.

It knows the hook contract in ``hooks.py`` and nothing of any plug-in (policy, journal,
recording, alerts, ops): ``gateway/service.py`` assembles the plug-ins into a hook chain.
"""
