// oidc-provider (https://github.com/panva/node-oidc-provider), a certified OpenID provider,
// configured for the interoperability tests in tests/interop.rs.
//
// Usage: node tests/oidc/server.mjs <port> [marker]
//
// - client "api-client" / "api-secret": the API caller, grant client_credentials, opaque access
//   tokens (no resource indicators, so oidc-provider issues opaque tokens);
// - client "dpop-client" / "dpop-secret": like api-client, but registered with
//   dpop_bound_access_tokens, so its token requests need a DPoP proof (RFC 9449) and its opaque
//   tokens are DPoP-bound: token_type DPoP, and introspection answers cnf.jkt (features.dPoP is
//   on by default; tests/oidc/dpop-client.mjs is that client);
// - client "gateway" / "gateway-secret": the gateway, which introspects (RFC 7662) and gets
//   RFC 9701 JWT introspection responses (introspection_signed_response_alg RS256) when it
//   sends Accept: application/token-introspection+jwt;
// - revocation (RFC 7009) for the token's own client.
//
// Endpoints: POST /token, POST /token/introspection, POST /token/revocation, GET /jwks.
// Test hooks: GET /test/ready answers the marker (so the test knows this is its server),
// GET /test/introspections the number of introspection requests received, GET
// /test/public-key.pem the signing key (as published at /jwks) for openssl.
//
// The server exits when its stdin closes, so it never outlives the test that started it.

import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const marker = process.argv[3] ?? 'oidc-provider';
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.mjs <port> [marker]');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'api-client',
      client_secret: 'api-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'read write',
    },
    {
      client_id: 'dpop-client',
      client_secret: 'dpop-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'read write',
      dpop_bound_access_tokens: true,
    },
    {
      client_id: 'gateway',
      client_secret: 'gateway-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      introspection_signed_response_alg: 'RS256',
    },
  ],
  scopes: ['read', 'write'],
  jwks: { keys: [signingKey] },
  cookies: { keys: ['interop-test-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Only the gateway may introspect; any token of this provider.
    introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientId === 'gateway' },
    jwtIntrospection: { enabled: true },
    // On by default in oidc-provider 9; explicit because the DPoP tests depend on it. No nonces.
    dPoP: { enabled: true },
    // A client may revoke its own tokens.
    revocation: { enabled: true, allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId },
  },
  ttl: { ClientCredentials: 600 },
  // DPoP proofs the token endpoint accepts: the default (ES256, Ed25519, EdDSA) and the RSA
  // algorithms, so that every algorithm the dpop library makes can be tried at the gateway.
  enabledJWA: { dPoPSigningAlgValues: ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256'] },
});

let introspections = 0;
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/test/ready') {
    ctx.type = 'text/plain';
    ctx.body = marker;
    return;
  }
  if (ctx.method === 'GET' && ctx.path === '/test/public-key.pem') {
    ctx.type = 'application/x-pem-file';
    ctx.body = publicKey.export({ type: 'spki', format: 'pem' });
    return;
  }
  if (ctx.method === 'GET' && ctx.path === '/test/introspections') {
    ctx.type = 'text/plain';
    ctx.body = String(introspections);
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/token/introspection') {
    introspections += 1;
  }
  await next();
});

// Errors the provider answers (invalid_client, unsupported_token_type, ...) go to stderr,
// which the test keeps for its failure messages.
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('introspection.error', (ctx, err) => console.error('introspection.error', err.message));
provider.on('revocation.error', (ctx, err) => console.error('revocation.error', err.message));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
server.on('error', (err) => {
  console.error(`listen failed: ${err.code ?? err.message}`);
  process.exit(err.code === 'EADDRINUSE' ? 98 : 1);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
