// API keys, scopes, the loopback rule, rate limits, the in-flight limit and
// CORS, against the real binary. Keys are made with `ragd keys` on the
// server's own data folder while it runs, as an operator would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import net from 'node:net';
import {
  RAGD_BIN, ragdEnv, runRagd, startServer, startFakeOpenAI, postJson, tempDir, sleep,
} from './helpers.mjs';

// `ragd keys create`: the key is alone on the last line of stdout.
async function createKey(data, ...args) {
  const r = await runRagd(['keys', 'create', '--data', data, ...args]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const key = lines.at(-1);
  assert.match(key, /^rk_[A-Za-z0-9_-]{43}$/);
  const id = /key (rk_[A-Za-z0-9_-]{8})/.exec(r.stdout)[1];
  assert.ok(key.startsWith(id));
  return { key, id };
}

const bearer = (key) => ({ authorization: `Bearer ${key}` });

// Sends raw bytes and reads until the server closes or a whole response
// (by Content-Length) has come; resolves {head, body}.
function rawRequest(port, text) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const done = () => {
      const s = data.toString('utf8');
      const i = s.indexOf('\r\n\r\n');
      sock.destroy();
      resolve({ head: i < 0 ? s : s.slice(0, i + 2), body: i < 0 ? '' : s.slice(i + 4) });
    };
    sock.on('data', (d) => {
      data = Buffer.concat([data, d]);
      const s = data.toString('utf8');
      const i = s.indexOf('\r\n\r\n');
      const m = /\r\ncontent-length: (\d+)/i.exec(s.slice(0, i));
      if (i >= 0 && m && Buffer.byteLength(s.slice(i + 4)) >= Number(m[1])) done();
    });
    sock.on('end', done);
    sock.on('error', (e) => (data.length ? done() : reject(e)));
    sock.write(text);
  });
}

test('keys: 401 without a valid key, 403 for the wrong scope, open routes stay open', async (t) => {
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const admin = await createKey(data, '--scope', 'admin', '--name', 'ops');
  const query = await createKey(data, '--scope', 'query', '--name', 'widget');
  const srv = await startServer({ data });
  t.after(() => srv.stop());

  // The store keeps hashes only: the list shows ids, never keys.
  const list = await runRagd(['keys', 'list', '--data', data]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`${admin.id}\\s+admin`));
  assert.match(list.stdout, new RegExp(`${query.id}\\s+query`));
  assert.ok(!list.stdout.includes(admin.key) && !list.stdout.includes(query.key));

  const doc = { id: 'refunds', text: '# Refunds\n\nRefunds take 3 business days.' };
  let r = await postJson(srv.base, '/v1/documents', doc);
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.code, 'unauthorized');
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  assert.match(r.headers.get('www-authenticate'), /^Bearer realm="ragd"/);

  r = await postJson(srv.base, '/v1/documents', doc, bearer(query.key.slice(0, -1) + 'x'));
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate'), /error="invalid_token"/);

  r = await postJson(srv.base, '/v1/documents', doc, bearer(query.key));
  assert.equal(r.status, 403, r.text);
  assert.equal(r.json.code, 'forbidden');
  assert.match(r.headers.get('www-authenticate'), /insufficient_scope/);

  r = await postJson(srv.base, '/v1/documents', doc, bearer(admin.key));
  assert.equal(r.status, 200, r.text);
  for (const route of ['/v1/documents', '/v1/documents/refunds']) {
    assert.equal((await fetch(srv.base + route, { headers: bearer(query.key) })).status, 403, route);
    assert.equal((await fetch(srv.base + route, { headers: bearer(admin.key) })).status, 200, route);
  }

  // Query routes: a query key, or an admin key (admin implies query).
  for (const key of [query.key, admin.key]) {
    r = await postJson(srv.base, '/v1/search', { query: 'refunds' }, bearer(key));
    assert.equal(r.status, 200, r.text);
    r = await postJson(srv.base, '/v1/chat', { message: 'How long do refunds take?', stream: false }, bearer(key));
    assert.equal(r.status, 200, r.text);
    const s = await fetch(srv.base + '/v1/chat/stream?message=refunds', { headers: bearer(key) });
    assert.equal(s.status, 200);
    assert.match(await s.text(), /event: done/);
  }
  r = await postJson(srv.base, '/v1/search', { query: 'refunds' });
  assert.equal(r.status, 401);
  assert.equal((await fetch(srv.base + '/v1/chat/stream?message=refunds')).status, 401);

  // The OpenAI-compatible route keeps OpenAI's error shape.
  r = await postJson(srv.base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'refunds?' }] });
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'unauthorized');
  assert.equal(r.json.error.type, 'invalid_request_error');
  r = await postJson(srv.base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'refunds?' }] }, bearer(query.key));
  assert.equal(r.status, 200, r.text);

  // The key is checked before the body: no hint about what a valid body is.
  r = await postJson(srv.base, '/v1/search', 'not json');
  assert.equal(r.status, 401);

  // Open: health, readiness, the chat page, the API description, and
  // /metrics (RAGD_METRICS_AUTH defaults to none on loopback).
  for (const route of ['/healthz', '/readyz', '/', '/web/app.js', '/openapi.json', '/docs', '/metrics'])
    assert.equal((await fetch(srv.base + route)).status, 200, route);
});

test('keys: a revoked key is refused within a second; the last key revoked reopens loopback', async (t) => {
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const query = await createKey(data, '--scope', 'query');
  const admin = await createKey(data, '--scope', 'admin');
  const srv = await startServer({ data });
  t.after(() => srv.stop());
  const search = (h) => postJson(srv.base, '/v1/search', { query: 'refunds' }, h);
  assert.equal((await search(bearer(query.key))).status, 200);

  const revoke = await runRagd(['keys', 'revoke', '--data', data, query.id]);
  assert.equal(revoke.code, 0, revoke.stderr);
  const revokedAt = Date.now();
  let status;
  while ((status = (await search(bearer(query.key))).status) === 200 && Date.now() - revokedAt < 3000) await sleep(20);
  const took = Date.now() - revokedAt;
  assert.equal(status, 401);
  assert.ok(took < 1000, `refused after ${took} ms`);
  assert.match((await runRagd(['keys', 'list', '--data', data])).stdout, /revoked/);
  // Revoking it again names the problem.
  const again = await runRagd(['keys', 'revoke', '--data', data, query.id]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /no active key/);

  assert.equal((await search(bearer(admin.key))).status, 200);

  // No active key left and a loopback listener: open again, as documented.
  assert.equal((await runRagd(['keys', 'revoke', '--data', data, admin.id])).code, 0);
  await sleep(600);
  assert.equal((await search({})).status, 200);
  // A key created while serving turns authentication on, just as quickly.
  await createKey(data, '--scope', 'admin');
  await sleep(600);
  assert.equal((await search({})).status, 401);
});

test('serve: no keys and a non-loopback address is refused unless RAGD_ALLOW_OPEN=1', async (t) => {
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const refused = await runRagd(['serve', '--listen', '0.0.0.0:0', '--data', data]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /refusing to listen on 0\.0\.0\.0:0 without API keys/);
  assert.match(refused.stderr, /RAGD_ALLOW_OPEN=1/);

  // Allowed on purpose: it starts and says it is open.
  const child = spawn(RAGD_BIN, ['serve', '--listen', '0.0.0.0:0', '--data', data], {
    env: ragdEnv({ RAGD_ALLOW_OPEN: '1' }),
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  while (!/READY \d+/.test(out) && child.exitCode === null) await sleep(50);
  assert.match(out, /WITHOUT authentication/);
  child.kill('SIGTERM');
  await once(child, 'exit');

  // With a key, a public address is fine, and the loopback server says
  // authentication is on.
  const admin = await createKey(data, '--scope', 'admin');
  const srv = await startServer({ data });
  t.after(() => srv.stop());
  assert.equal((await fetch(srv.base + '/v1/documents', { headers: bearer(admin.key) })).status, 200);
});

test('limits: 429 with Retry-After over the per-key rate, then recovery; the OpenAI route keeps its shape', async (t) => {
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const limited = await createKey(data, '--scope', 'query', '--rpm', '60');
  const other = await createKey(data, '--scope', 'query');
  const srv = await startServer({ data });
  t.after(() => srv.stop());
  const search = (key) => postJson(srv.base, '/v1/search', { query: 'refunds' }, bearer(key));

  // A bucket of 60 tokens refilled at one per second: about 60 pass at once.
  const started = Date.now();
  let passed = 0;
  let r;
  while ((r = await search(limited.key)).status === 200 && passed < 200) passed++;
  const seconds = (Date.now() - started) / 1000;
  assert.equal(r.status, 429, r.text);
  assert.ok(passed >= 60 && passed <= 60 + Math.ceil(seconds) + 1, `${passed} passed in ${seconds} s`);
  assert.equal(r.json.code, 'rate_limited');
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  const retry = Number(r.headers.get('retry-after'));
  assert.ok(retry >= 1 && retry <= 2, `Retry-After ${retry}`);

  // Another key has its own bucket.
  assert.equal((await search(other.key)).status, 200);
  // The OpenAI route: same limit, OpenAI's error object.
  const oa = await postJson(srv.base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }, bearer(limited.key));
  if (oa.status === 429) {
    assert.equal(oa.json.error.code, 'rate_limited');
    assert.ok(Number(oa.headers.get('retry-after')) >= 1);
  }

  await sleep(retry * 1000 + 100);
  assert.equal((await search(limited.key)).status, 200);
});

test('limits: requests in flight per key (--streams), released when the stream ends', async (t) => {
  const fake = await startFakeOpenAI(['--text', 'Refunds take three business days.', '--split', 'random', '--delay-ms', '150']);
  t.after(() => fake.stop());
  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const one = await createKey(data, '--scope', 'query', '--streams', '1');
  const admin = await createKey(data, '--scope', 'admin');
  const srv = await startServer({ data, env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_RETRIES: '0' } });
  t.after(() => srv.stop());
  // A passage to answer from, so the answer goes to the (slow) model.
  const put = await postJson(srv.base, '/v1/documents', { id: 'refunds', text: '# Refunds\n\nRefunds take 3 business days.' }, bearer(admin.key));
  assert.equal(put.status, 200, put.text);
  const ask = () => fetch(srv.base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(one.key) },
    body: JSON.stringify({ message: 'How long do refunds take?' }),
  });
  const first = await ask();
  assert.equal(first.status, 200);
  const second = await ask();
  assert.equal(second.status, 429);
  const problem = await second.json();
  assert.equal(problem.code, 'rate_limited');
  assert.match(problem.detail, /in flight/);
  assert.equal(second.headers.get('retry-after'), '1');
  assert.match(await first.text(), /event: done/);
  // The place comes back once the connection is done with the stream.
  let third;
  for (let i = 0; i < 50; i++) {
    third = await ask();
    if (third.status === 200) break;
    await third.text();
    await sleep(50);
  }
  assert.equal(third.status, 200);
  assert.match(await third.text(), /event: done/);
});

test('CORS: off by default; preflight and responses for allowed origins only', async (t) => {
  const plain = await startServer();
  t.after(() => plain.stop());
  let r = await fetch(plain.base + '/v1/search', { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://help.example.com' }, body: '{"query":"refunds"}' });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  r = await fetch(plain.base + '/v1/search', { method: 'OPTIONS', headers: { origin: 'https://help.example.com', 'access-control-request-method': 'POST' } });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('access-control-allow-origin'), null);

  const data = tempDir();
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const query = await createKey(data, '--scope', 'query');
  const srv = await startServer({ data, env: { RAGD_CORS_ORIGINS: 'https://help.example.com, https://shop.example.com' } });
  t.after(() => srv.stop());
  // The preflight carries no key and needs none.
  r = await fetch(srv.base + '/v1/chat', {
    method: 'OPTIONS',
    headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get('access-control-allow-origin'), 'https://shop.example.com');
  assert.match(r.headers.get('access-control-allow-methods'), /POST/);
  assert.match(r.headers.get('access-control-allow-headers'), /Authorization/);
  assert.match(r.headers.get('access-control-allow-headers'), /Content-Type/);
  assert.match(r.headers.get('vary'), /Origin/);
  r = await fetch(srv.base + '/v1/documents/x', { method: 'OPTIONS', headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'DELETE' } });
  assert.equal(r.status, 204);
  assert.match(r.headers.get('access-control-allow-methods'), /GET, DELETE/);
  r = await fetch(srv.base + '/v1/chat', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('access-control-allow-origin'), null);
  r = await fetch(srv.base + '/nope', { method: 'OPTIONS', headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'POST' } });
  assert.equal(r.status, 404);

  // Real responses, errors included (a browser must read a 401 to act on it).
  r = await fetch(srv.base + '/v1/search', { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://help.example.com', ...bearer(query.key) }, body: '{"query":"refunds"}' });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), 'https://help.example.com');
  assert.match(r.headers.get('access-control-expose-headers'), /Retry-After/);
  r = await fetch(srv.base + '/v1/search', { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://help.example.com' }, body: '{"query":"refunds"}' });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('access-control-allow-origin'), 'https://help.example.com');
  r = await fetch(srv.base + '/v1/search', { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://evil.example', ...bearer(query.key) }, body: '{"query":"refunds"}' });
  assert.equal(r.headers.get('access-control-allow-origin'), null);
});

test('limits: a non-streamed answer is cut at RAGD_REQUEST_TIMEOUT_S; headers over the limit get a problem+json 431', async (t) => {
  const fake = await startFakeOpenAI(['--delay-ms', '4000']);
  t.after(() => fake.stop());
  const srv = await startServer({ env: { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_RETRIES: '0', RAGD_REQUEST_TIMEOUT_S: '1', RAGD_MAX_HEADER_BYTES: '16384' } });
  t.after(() => srv.stop());
  const put = await postJson(srv.base, '/v1/documents', { id: 'refunds', text: '# Refunds\n\nRefunds take 3 business days.' });
  assert.equal(put.status, 200, put.text);
  const started = Date.now();
  let r = await postJson(srv.base, '/v1/chat', { message: 'How long do refunds take?', stream: false });
  assert.equal(r.status, 504, r.text);
  assert.equal(r.json.code, 'request_timeout');
  assert.ok(Date.now() - started < 3500, `answered after ${Date.now() - started} ms`);
  r = await postJson(srv.base, '/v1/chat/completions', { messages: [{ role: 'user', content: 'How long do refunds take?' }] });
  assert.equal(r.status, 504, r.text);
  assert.equal(r.json.error.code, 'request_timeout');

  // Over RAGD_MAX_HEADER_BYTES: problem+json 431, read off a raw socket
  // (what any client sees, whatever its HTTP library does with big headers).
  let raw = await rawRequest(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
  assert.match(raw.head, /^HTTP\/1\.1 431 /);
  assert.match(raw.head, /\r\ncontent-type: application\/problem\+json\r\n/i);
  const problem = JSON.parse(raw.body);
  assert.equal(problem.code, 'headers_too_large');
  assert.equal(problem.status, 431);
  assert.match(problem.detail, /the limit is 16384 \(RAGD_MAX_HEADER_BYTES\)/);
  // Many small headers count together, and a body does not change it.
  const many = Array.from({ length: 190 }, (_, i) => `X-H${i}: ${'b'.repeat(80)}\r\n`).join('');
  raw = await rawRequest(srv.port, `POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n${many}\r\n{}`);
  assert.match(raw.head, /^HTTP\/1\.1 431 /);
  assert.equal(JSON.parse(raw.body).code, 'headers_too_large');
  // Far over (more than the connection's memory, twice the limit): libmicrohttpd's own 431.
  raw = await rawRequest(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40000)}\r\n\r\n`);
  assert.match(raw.head, /^HTTP\/1\.1 431 /);
  // Under the limit, and the server still serves.
  assert.equal((await fetch(srv.base + '/healthz', { headers: { 'x-small': 'a'.repeat(12000) } })).status, 200);
});
