// Vault compatibility check with the real Node.js client, node-vault (pinned in
// tests/tests/clients.rs). Run by the `clients::node_vault_*` integration test against a
// fresh, uninitialised Coffer server over TLS:
//
//   VAULT_ADDR=https://127.0.0.1:PORT VAULT_CACERT=ca.pem \
//     NODE_PATH=<dir>/node_modules node tests/clients/node_vault_compat.js
//
// node-vault validates request bodies and several responses against its own JSON
// schemas (tv4), so this checks shapes as well as values. Exits non-zero with the
// failing check on the first mismatch; prints one line per check.
'use strict';

const fs = require('fs');
const nodeVault = require('node-vault');

const endpoint = process.env.VAULT_ADDR;
const ca = fs.readFileSync(process.env.VAULT_CACERT);
let checks = 0;

function check(name, cond) {
    if (!cond) {
        console.log(`FAILED: ${name}`);
        process.exit(1);
    }
    checks += 1;
    console.log(`ok: ${name}`);
}

async function rejects(name, status, fn) {
    try {
        await fn();
    } catch (e) {
        check(`${name} (got ${e.response && e.response.statusCode})`,
            e.response && e.response.statusCode === status);
        return;
    }
    check(`${name}: expected an error`, false);
}

function client(token) {
    return nodeVault({ apiVersion: 'v1', endpoint, token, requestOptions: { ca } });
}

async function main() {
    const v = client();
    check('uninitialised', (await v.initialized()).initialized === false);
    const init = await v.init({ secret_shares: 3, secret_threshold: 2 });
    check('init: 3 shares and a root token', init.keys.length === 3 && init.root_token.startsWith('hvs.'));
    let st = await v.unseal({ key: init.keys[0] });
    check('one share: sealed, progress 1', st.sealed === true && st.progress === 1);
    st = await v.unseal({ key: init.keys[1] });
    check('two shares: unsealed', st.sealed === false);
    v.token = init.root_token;
    for (let i = 0; i < 100; i += 1) {
        try {
            if ((await v.leader()).is_self) break;
        } catch (e) { /* not active yet */ }
        await new Promise((r) => setTimeout(r, 100));
    }
    const health = await v.health();
    check('health: active', health.initialized && !health.sealed && !health.standby);

    await v.mount({ mount_point: 'secret', type: 'kv', options: { version: '2' } });
    const mounts = await v.mounts();
    check('mounts lists secret/', Object.prototype.hasOwnProperty.call(mounts.data || mounts, 'secret/'));
    await v.write('secret/data/app', { data: { password: 'p1' } });
    let r = await v.read('secret/data/app');
    check('kv v2 write/read', r.data.data.password === 'p1' && r.data.metadata.version === 1);
    const list = await v.list('secret/metadata/');
    check('kv v2 list', list.data.keys.includes('app'));
    await v.delete('secret/metadata/app');
    await rejects('kv v2 read after metadata delete is 404', 404, () => v.read('secret/data/app'));

    await v.addPolicy({ name: 'ro', rules: 'path "secret/data/ro/*" { capabilities = ["read"] }' });
    check('policy read back', (await v.getPolicy({ name: 'ro' })).rules.includes('secret/data/ro/*'));
    check('policies list', (await v.policies()).policies.includes('ro'));
    await v.write('secret/data/ro/x', { data: { v: '1' } });
    // node-vault's token commands are "token sources": the client adopts the token in
    // the answer, so the root client takes its root token back after each.
    const root = init.root_token;
    const tok = (await v.tokenCreate({ policies: ['ro'], ttl: '1h' })).auth.client_token;
    check('tokenCreate adopted the new token', v.token === tok);
    v.token = root;
    const ro = client(tok);
    check('token reads what its policy allows', (await ro.read('secret/data/ro/x')).data.data.v === '1');
    await rejects('token is refused a write (403)', 403, () => ro.write('secret/data/ro/x', { data: { v: '2' } }));
    check('lookup-self', (await ro.tokenLookupSelf()).data.policies.includes('ro'));
    const renewed = await v.tokenRenew({ token: tok, increment: '2h' });
    v.token = root;
    check('renew', renewed.auth.lease_duration === 7200);
    await v.tokenRevoke({ token: tok });
    await rejects('revoked token (403)', 403, () => ro.tokenLookupSelf());

    await v.enableAuth({ mount_point: 'userpass', type: 'userpass' });
    await v.write('auth/userpass/users/bob', { password: 'pw', policies: 'ro' });
    const up = client();
    const login = await up.userpassLogin({ username: 'bob', password: 'pw' });
    check('userpass login sets the token', up.token === login.auth.client_token && login.auth.policies.includes('ro'));
    check('auths lists userpass/', Object.prototype.hasOwnProperty.call((await v.auths()).data || {}, 'userpass/'));

    await v.enableAuth({ mount_point: 'approle', type: 'approle' });
    await v.addApproleRole({ role_name: 'web', policies: 'ro' });
    const roleId = (await v.getApproleRoleId({ role_name: 'web' })).data.role_id;
    const secretId = (await v.getApproleRoleSecret({ role_name: 'web' })).data.secret_id;
    const ar = client();
    await ar.approleLogin({ role_id: roleId, secret_id: secretId });
    check('approle login', (await ar.tokenLookupSelf()).data.policies.includes('ro'));

    await v.mount({ mount_point: 'transit', type: 'transit' });
    await v.transitCreateKey({ name: 'k' });
    const ct = (await v.encryptData({ name: 'k', plaintext: Buffer.from('hi').toString('base64') })).data.ciphertext;
    const pt = (await v.decryptData({ name: 'k', ciphertext: ct })).data.plaintext;
    check('transit round trip', Buffer.from(pt, 'base64').toString() === 'hi');

    const wrapped = await v.write('sys/wrapping/wrap', { s: 'wrapped-value' }, { headers: { 'X-Vault-Wrap-TTL': '60s' } });
    const un = await v.unwrap({ token: wrapped.wrap_info.token });
    check('wrap/unwrap', un.data.s === 'wrapped-value');

    await v.unmount({ mount_point: 'transit' });
    check('unmount', !Object.prototype.hasOwnProperty.call((await v.mounts()).data || {}, 'transit/'));
    await v.seal();
    check('sealed', (await v.status()).sealed === true);
    await rejects('sealed: 503', 503, () => v.read('secret/data/ro/x'));
    console.log(`node-vault: ${checks} checks passed`);
}

main().catch((e) => {
    console.log(`FAILED: ${e.message} ${e.response ? JSON.stringify(e.response.body) : ''}`);
    process.exit(1);
});
