// The key routes: POST /v1/keys, GET /v1/keys, DELETE /v1/keys/{id}, with
// an admin key; the first key from loopback while none exists; strict
// validation naming the field. Against the real binary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { RAGD_BIN, ragdEnv, runRagd, startServer, postJson, tempDir, sleep } from './helpers.mjs';

const bearer = (key) => ({ authorization: `Bearer ${key}` });
const del = (base, route, headers = {}) => fetch(base + route, { method: 'DELETE', headers });

test('keys over HTTP: the first admin key from loopback, then admin only; list without secrets; revoke', async (t) => {
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const srv = await startServer({ data });
  t.after(() => srv.stop());

  // No keys: the server is open on loopback, so the first key can be made here.
  let r = await fetch(srv.base + '/v1/keys');
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { keys: [] });
  r = await postJson(srv.base, '/v1/keys', { scope: 'admin', name: 'ops' });
  assert.equal(r.status, 201, r.text);
  const admin = r.json;
  assert.match(admin.key, /^rk_[A-Za-z0-9_-]{43}$/);
  assert.ok(admin.key.startsWith(admin.id));
  assert.equal(admin.scope, 'admin');
  assert.equal(admin.name, 'ops');
  assert.equal(admin.rpm, null);
  assert.equal(admin.streams, null);
  assert.ok(Math.abs(admin.created_at - Date.now() / 1000) < 60);

  // Authentication is now on (within the key cache's half second).
  const began = Date.now();
  while ((r = await fetch(srv.base + '/v1/keys')).status === 200 && Date.now() - began < 3000) await sleep(20);
  assert.equal(r.status, 401);
  r = await postJson(srv.base, '/v1/keys', { scope: 'admin' });
  assert.equal(r.status, 401);

  // The admin key makes a query key with its own limits.
  r = await postJson(srv.base, '/v1/keys', { scope: 'query', name: 'widget', rpm: 120, streams: 3 }, bearer(admin.key));
  assert.equal(r.status, 201, r.text);
  const query = r.json;
  assert.equal(query.rpm, 120);
  assert.equal(query.streams, 3);
  assert.notEqual(query.key, admin.key);

  // The new key works at once on its routes, and the CLI sees it.
  r = await postJson(srv.base, '/v1/search', { query: 'refunds' }, bearer(query.key));
  assert.equal(r.status, 200, r.text);
  const cli = await runRagd(['keys', 'list', '--data', data]);
  assert.match(cli.stdout, new RegExp(`${query.id}\\s+query\\s+120\\s+3 `));

  // A query key may not manage keys.
  r = await postJson(srv.base, '/v1/keys', { scope: 'admin' }, bearer(query.key));
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.code, 'forbidden');
  assert.equal((await fetch(srv.base + '/v1/keys', { headers: bearer(query.key) })).status, 403);
  assert.equal((await del(srv.base, `/v1/keys/${admin.id}`, bearer(query.key))).status, 403);

  // The list: ids, scopes, names, limits; never a key or a hash.
  r = await fetch(srv.base + '/v1/keys', { headers: bearer(admin.key) });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.ok(!text.includes(admin.key) && !text.includes(query.key), 'no secret in the list');
  assert.ok(!/[0-9a-f]{64}/.test(text), 'no hash in the list');
  const { keys } = JSON.parse(text);
  assert.deepEqual(keys.map((k) => [k.id, k.scope, k.name, k.rpm, k.streams, k.revoked_at]),
    [[admin.id, 'admin', 'ops', null, null, null], [query.id, 'query', 'widget', 120, 3, null]]);

  // Revoke: refused within a second, shown as revoked, a second revoke is 404.
  r = await del(srv.base, `/v1/keys/${query.id}`, bearer(admin.key));
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { id: query.id, revoked: true });
  const revokedAt = Date.now();
  let status;
  while ((status = (await postJson(srv.base, '/v1/search', { query: 'x' }, bearer(query.key))).status) === 200 && Date.now() - revokedAt < 3000) await sleep(20);
  assert.equal(status, 401);
  assert.ok(Date.now() - revokedAt < 1000);
  r = await del(srv.base, `/v1/keys/${query.id}`, bearer(admin.key));
  assert.equal(r.status, 404);
  const gone = await r.json();
  assert.equal(gone.code, 'key_not_found');
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.equal((await del(srv.base, '/v1/keys/nonsense', bearer(admin.key))).status, 404);
  r = await fetch(srv.base + '/v1/keys', { headers: bearer(admin.key) });
  const after = (await r.json()).keys.find((k) => k.id === query.id);
  assert.ok(after.revoked_at >= admin.created_at, JSON.stringify(after));
});

test('keys over HTTP: strict validation names the field', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const cases = [
    [{}, 'missing_field', /"scope" is required/],
    [{ scope: 'root' }, 'invalid_field', /"scope" must be "query" or "admin"/],
    [{ scope: 7 }, 'invalid_field', /"scope" must be a string/],
    [{ scope: 'query', name: 5 }, 'invalid_field', /"name" must be a string/],
    [{ scope: 'query', name: 'x'.repeat(201) }, 'invalid_field', /"name" is longer than 200 bytes/],
    [{ scope: 'query', rpm: 0 }, 'invalid_field', /"rpm" must be an integer from 1/],
    [{ scope: 'query', rpm: 1.5 }, 'invalid_field', /"rpm"/],
    [{ scope: 'query', streams: '3' }, 'invalid_field', /"streams" must be an integer/],
    [{ scope: 'query', key: 'rk_mine' }, 'invalid_field', /unknown field "key"/],
  ];
  for (const [body, code, detail] of cases) {
    const r = await postJson(srv.base, '/v1/keys', body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.code, code, JSON.stringify(body));
    assert.match(r.json.detail, detail);
  }
  const bad = await postJson(srv.base, '/v1/keys', '{"scope": ');
  assert.equal(bad.json.code, 'invalid_json');
  // Nothing was created by any of them.
  assert.deepEqual(await (await fetch(srv.base + '/v1/keys')).json(), { keys: [] });
});

test('keys over HTTP: with no keys, the first one cannot be made from another machine', async (t) => {
  // An open server on a non-loopback address (RAGD_ALLOW_OPEN=1), reached
  // through that address: the client is not on loopback.
  const os = await import('node:os');
  const addr = Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  if (!addr) {
    t.skip('no non-loopback IPv4 address on this machine');
    return;
  }
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const child = spawn(RAGD_BIN, ['serve', '--listen', `${addr}:0`, '--data', data], { env: ragdEnv({ RAGD_ALLOW_OPEN: '1' }) });
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  while (!/READY \d+/.test(out) && child.exitCode === null) await sleep(50);
  const base = `http://${addr}:${/READY (\d+)/.exec(out)[1]}`;
  const r = await postJson(base, '/v1/keys', { scope: 'admin' });
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.code, 'forbidden');
  assert.match(r.json.detail, /from loopback or with `ragd keys create/);
  // Reading the (empty) list is as open as the rest of this open server.
  assert.deepEqual(await (await fetch(base + '/v1/keys')).json(), { keys: [] });
});
