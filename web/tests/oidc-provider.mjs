// A small, real OpenID Connect provider for the single sign-on browser test: panva's
// oidc-provider (a certified implementation, MIT) on loopback, over https when given a
// certificate, with one registered confidential client (client_secret_basic), PKCE S256
// required, its development login form (any account id, any password) and consent screen, and
// an RS256 signing key made at start.
//
// Used by sso.test.mjs through `startProvider`; also runnable on its own for trying SSO by hand:
//
//   node tests/oidc-provider.mjs PORT REDIRECT_URI   (client metaward, secret printed)

import http from "node:http";
import https from "node:https";
import crypto from "node:crypto";
import Provider from "oidc-provider";

/**
 * Starts the provider on 127.0.0.1:`port` (0: any free port).
 * @param {{ port?: number, clientId: string, clientSecret: string, redirectUri: string,
 *           tls?: { key: string, cert: string } }} options  (tls: PEM texts; https then)
 * @returns {Promise<{ issuer: string, close: () => Promise<void> }>}
 */
export async function startProvider({ port = 0, clientId, clientSecret, redirectUri, tls }) {
  const server = tls ? https.createServer({ key: tls.key, cert: tls.cert }) : http.createServer();
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  const issuer = `${tls ? "https" : "http"}://127.0.0.1:${server.address().port}`;
  const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: "jwk" }), kid: crypto.randomUUID(), alg: "RS256", use: "sig" };
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    }],
    jwks: { keys: [signingKey] },
    pkce: { required: () => true },
    // The account id typed on the login form is the subject; a few claims to go with it. Ids
    // that start with `grp-` are in the group `ward-a-physicians` (scope `groups`).
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          const groups = id.startsWith("grp-") ? ["staff", "ward-a-physicians"] : ["staff"];
          return { sub: id, preferred_username: id, name: `Test ${id}`, email: `${id}@hospital.example`, email_verified: true, groups };
        },
      };
    },
    claims: { openid: ["sub"], profile: ["preferred_username", "name"], email: ["email", "email_verified"], groups: ["groups"] },
    conformIdTokenClaims: false,
    cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
    features: { devInteractions: { enabled: true } },
  });
  // The development login form warns on the console; that is expected here.
  server.on("request", provider.callback());
  return {
    issuer,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [port, redirectUri] = process.argv.slice(2);
  const clientSecret = crypto.randomBytes(24).toString("base64url");
  const { issuer } = await startProvider({ port: Number(port ?? 0), clientId: "metaward", clientSecret, redirectUri });
  console.log(`oidc provider issuer=${issuer} client_id=metaward client_secret=${clientSecret}`);
}
