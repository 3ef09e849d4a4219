// Drives KMI's ACME endpoint with the npm acme-client: account with EAB, order, http-01,
// finalize, download, key rollover (old key refused afterwards), revoke. Prints one JSON line.
'use strict';

const http = require('node:http');
const acme = require('acme-client');

const env = (name) => {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
};

async function main() {
    const directoryUrl = env('ACME_DIRECTORY');
    const domain = env('ACME_DOMAIN');
    const port = Number(env('ACME_HTTP01_PORT'));
    const tokens = new Map();
    const server = http.createServer((req, res) => {
        const token = req.url.split('/').pop();
        if (!req.url.startsWith('/.well-known/acme-challenge/') || !tokens.has(token)) {
            res.writeHead(404).end();
            return;
        }
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end(tokens.get(token));
    });
    await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));

    const oldKey = await acme.crypto.createPrivateEcdsaKey();
    const client = new acme.Client({
        directoryUrl,
        accountKey: oldKey,
        externalAccountBinding: { kid: env('ACME_EAB_KID'), hmacKey: env('ACME_EAB_HMAC') },
        backoffMin: 50,
        backoffMax: 500,
    });
    const result = {};
    try {
        await client.createAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.test'] });
        result.accountUrl = client.getAccountUrl();

        const order = await client.createOrder({ identifiers: [{ type: 'dns', value: domain }] });
        for (const authz of await client.getAuthorizations(order)) {
            const challenge = authz.challenges.find((c) => c.type === 'http-01');
            tokens.set(challenge.token, await client.getChallengeKeyAuthorization(challenge));
            await client.completeChallenge(challenge);
            await client.waitForValidStatus(challenge);
        }
        const [, csr] = await acme.crypto.createCsr({ altNames: [domain] }, await acme.crypto.createPrivateEcdsaKey());
        const finalized = await client.finalizeOrder(order, csr);
        result.orderStatus = finalized.status;
        const chain = await client.getCertificate(finalized);
        result.certificate = chain;

        const newKey = await acme.crypto.createPrivateEcdsaKey();
        await client.updateAccountKey(newKey);
        const stale = new acme.Client({ directoryUrl, accountKey: oldKey, accountUrl: result.accountUrl });
        try {
            await stale.createOrder({ identifiers: [{ type: 'dns', value: domain }] });
            result.oldKeyRefused = false;
        } catch (err) {
            result.oldKeyRefused = true;
            result.oldKeyError = String(err.message);
        }
        await client.revokeCertificate(chain, { reason: 4 });
        result.revoked = true;
    } finally {
        server.close();
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
});
