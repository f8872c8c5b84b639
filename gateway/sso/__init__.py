"""Single sign-on with OpenID Connect: people log in with the organisation's IdP.

``settings`` reads the ``sso:`` section; ``discovery`` and ``jwks`` talk to the provider;
``tokens`` validates a token into an identity; ``authenticator`` is what the assembly hands
the proxy core for users who are not local identities; ``login`` and ``cli`` are
``phigate login`` (the OAuth 2.0 device grant, RFC 8628) and its token cache.
"""
