// A DPoP client (RFC 9449) for the interoperability tests in tests/interop.rs, with keys and
// proofs made by the `dpop` library (https://github.com/panva/dpop, pinned in package.json),
// not by the project's own code.
//
// Usage: node tests/oidc/dpop-client.mjs <provider-url> <gateway-url> [count]
//
// 1. generates a key pair with the library (ES256, or the alg in $DPOP_ALG);
// 2. gets a DPoP-bound client_credentials token from oidc-provider at <provider-url>/token as
//    the client "dpop-client" / "dpop-secret" (tests/oidc/server.mjs), with a library-made proof
//    for POST <provider-url>/token (answering one `use_dpop_nonce` challenge if the provider
//    sends one);
// 3. makes `count` (default 2) proofs for GET <gateway-url> and one for POST <gateway-url>, each
//    with `ath` for that token and its own jti.
//
// Prints one JSON object:
//   {"token", "token_type", "scope", "jkt", "alg", "htu",
//    "proofs": ["<GET proof>", ...], "post_proof": "<POST proof>"}
// `htu` is <gateway-url> as given: the library puts it in the proofs verbatim, so the caller
// must send the requests to that URL with the matching Host header.
// Exits 1 with a message on stderr when anything fails.

import { calculateThumbprint, generateKeyPair, generateProof } from 'dpop';

const [provider, gateway, countArg] = process.argv.slice(2);
const count = countArg === undefined ? 2 : Number(countArg);
if (!provider || !gateway || !Number.isInteger(count) || count < 1) {
  console.error('usage: node dpop-client.mjs <provider-url> <gateway-url> [count]');
  process.exit(2);
}
const alg = process.env.DPOP_ALG ?? 'ES256';
const clientId = process.env.DPOP_CLIENT_ID ?? 'dpop-client';
const clientSecret = process.env.DPOP_CLIENT_SECRET ?? 'dpop-secret';

function fail(message) {
  console.error(message);
  process.exit(1);
}

const keypair = await generateKeyPair(alg);
const jkt = await calculateThumbprint(keypair.publicKey);

const tokenUrl = `${provider.replace(/\/+$/, '')}/token`;
async function tokenRequest(nonce) {
  const proof = await generateProof(keypair, tokenUrl, 'POST', nonce);
  return fetch(tokenUrl, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
      dpop: proof,
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'read' }),
  });
}

let response = await tokenRequest();
let body = await response.json().catch(() => ({}));
const nonce = response.headers.get('dpop-nonce');
if (response.status === 400 && body.error === 'use_dpop_nonce' && nonce) {
  response = await tokenRequest(nonce);
  body = await response.json().catch(() => ({}));
}
if (response.status !== 200 || typeof body.access_token !== 'string') {
  fail(`token endpoint answered ${response.status}: ${JSON.stringify(body)}`);
}
const token = body.access_token;

const proofs = [];
for (let i = 0; i < count; i += 1) {
  proofs.push(await generateProof(keypair, gateway, 'GET', undefined, token));
}
const postProof = await generateProof(keypair, gateway, 'POST', undefined, token);

console.log(JSON.stringify({
  token,
  token_type: body.token_type,
  scope: body.scope,
  jkt,
  alg,
  htu: gateway,
  proofs,
  post_proof: postProof,
}));
