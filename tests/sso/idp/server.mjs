// The OpenID provider the SSO tests run: npm oidc-provider over HTTPS on 127.0.0.1.
//
// Started by tests/sso/idp.py with a JSON settings file (argv[2]): port, TLS cert/key
// paths, the signing keys (private JWKs, RS256 and ES256), the test users and the initial
// access token for dynamic client registration (RFC 7591: the console tests register their
// web client with its redirect URI). Our code here is only the provider's configuration, a
// one-form login page for the interactive step (device flow and authorization code flow),
// /test/stats (how often the JWKS and the token endpoint were used, so tests can count) and
// /test/next-id-token: the next token answer to the named client carries this ID token
// instead of the provider's, which is how the negative tests play a token answer that was
// tampered with (another key, issuer, audience, nonce, an expired token).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `https://127.0.0.1:${settings.port}`;
const users = settings.users; // { id: { email, preferred_username, groups } }
const stats = { jwks: 0, token: 0 };
let nextIdToken = null; // { client, token }: see /test/next-id-token

const deviceClient = (clientId, alg) => ({
  client_id: clientId,
  client_name: clientId,
  token_endpoint_auth_method: 'none',
  grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
  response_types: [],
  redirect_uris: [],
  id_token_signed_response_alg: alg,
});

const provider = new Provider(issuer, {
  clients: [
    deviceClient('phigate', 'RS256'),
    deviceClient('phigate-es', 'ES256'),
    deviceClient('phigate-short', 'RS256'),
    deviceClient('other-app', 'RS256'),
  ],
  jwks: { keys: settings.keys },
  cookies: { keys: [settings.cookie_key] },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    registration: { enabled: true, initialAccessToken: settings.registration_token },
  },
  // groups and email reach the ID token (the token people hand to the gateway).
  conformIdTokenClaims: false,
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  ttl: {
    IdToken: (ctx, token, client) => (client.clientId === 'phigate-short' ? settings.short_ttl : 600),
    AccessToken: 600,
    DeviceCode: 600,
    RefreshToken: 3600,
    Grant: 3600,
    Interaction: 600,
    Session: 3600,
  },
  issueRefreshToken: async (ctx, client, source) => client.grantTypeAllowed('refresh_token')
    && source.scopes.has('offline_access'),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email_verified: true, name: id, ...user };
      },
    };
  },
});

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

// Consent is implied for these first-party clients: grant what the client asked for.
async function consent(details) {
  const { params, prompt: { details: missing } } = details;
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  return { consent: { grantId: await grant.save() } };
}

const loginPage = (uid, message) => `<!DOCTYPE html><html><head><title>Sign in</title></head>
<body><p>${message}</p><form method="post" action="/interaction/${uid}/login">
<input type="text" name="login" autofocus/><button type="submit">Sign in</button></form></body></html>`;

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/stats') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/test/next-id-token' && ctx.method === 'POST') {
    const form = await readForm(ctx.req);
    nextIdToken = { client: form.get('client_id'), token: form.get('id_token') };
    ctx.body = { ok: true };
    return;
  }
  if (ctx.path === '/jwks') stats.jwks += 1;
  if (ctx.path === '/token') {
    stats.token += 1;
    await next();
    const client = ctx.oidc && ctx.oidc.client && ctx.oidc.client.clientId;
    if (nextIdToken && client === nextIdToken.client && ctx.body && ctx.body.id_token) {
      ctx.body = { ...ctx.body, id_token: nextIdToken.token };
      nextIdToken = null;
    }
    return;
  }
  const match = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!match) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.prompt.name === 'consent') {
    ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, await consent(details),
      { mergeWithLastSubmission: true }));
    return;
  }
  if (ctx.method === 'POST' && match[2]) {
    const login = (await readForm(ctx.req)).get('login');
    if (users[login]) {
      ctx.redirect(await provider.interactionResult(ctx.req, ctx.res,
        { login: { accountId: login } }, { mergeWithLastSubmission: false }));
      return;
    }
    ctx.body = loginPage(match[1], 'Unknown user; try again');
    return;
  }
  ctx.body = loginPage(match[1], 'Sign in to the test provider');
});

const server = https.createServer({
  key: readFileSync(settings.tls_key),
  cert: readFileSync(settings.tls_cert),
}, provider.callback());
server.listen(settings.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
