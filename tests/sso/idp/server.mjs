// The OpenID provider the SSO tests run: npm oidc-provider over HTTPS on 127.0.0.1.
//
// Started by tests/sso/idp.py with a JSON settings file (argv[2]): port, TLS cert/key
// paths, the signing keys (private JWKs, RS256 and ES256) and the test users. Our code
// here is only the provider's configuration, a one-form login page for the device flow's
// user step, and /test/stats (how often the JWKS was fetched, so tests can count refreshes).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `https://127.0.0.1:${settings.port}`;
const users = settings.users; // { id: { email, preferred_username, groups } }
const stats = { jwks: 0, token: 0 };

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
  if (ctx.path === '/jwks') stats.jwks += 1;
  if (ctx.path === '/token') stats.token += 1;
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
