// The HTTP API over real loopback HTTP: documents, search, health, and every
// kind of bad input answered with the documented problem+json.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, postJson, ingestSampleKb } from './helpers.mjs';

let srv;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv?.stop();
});

function assertProblem(r, status, code) {
  assert.equal(r.status, status, `status of ${r.text}`);
  assert.match(r.headers.get('content-type'), /^application\/problem\+json/);
  assert.equal(r.json.code, code, r.text);
  assert.equal(r.json.status, status);
  assert.equal(r.json.type, `/errors/${code}`);
  assert.equal(typeof r.json.title, 'string');
  assert.equal(typeof r.json.detail, 'string');
}

test('health and readiness', async () => {
  const h = await fetch(srv.base + '/healthz');
  assert.equal(h.status, 200);
  assert.equal((await h.json()).status, 'ok');
  const r = await fetch(srv.base + '/readyz');
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.status, 'ready');
  assert.equal(body.generator, 'extractive');
  assert.ok(h.headers.get('x-request-id'));
});

test('documents: create, read, replace, unchanged, list, delete', async () => {
  const doc = {
    id: 'policy/refunds',
    title: 'Refund policy',
    text: '# Refunds\n\n## Cards\n\nCard refunds take 3 business days.\n\n## Bank transfer\n\nTransfers take 5 days.',
    url: 'https://example.test/refunds',
    metadata: { lang: 'en', product: 'store' },
  };
  let r = await postJson(srv.base, '/v1/documents', doc);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.documents[0].id, 'policy/refunds');
  assert.equal(r.json.documents[0].status, 'created');
  assert.ok(r.json.documents[0].chunks >= 1);

  r = await postJson(srv.base, '/v1/documents', doc);
  assert.equal(r.json.documents[0].status, 'unchanged');

  const got = await fetch(srv.base + '/v1/documents/policy/refunds');
  assert.equal(got.status, 200);
  const g = await got.json();
  assert.equal(g.title, 'Refund policy');
  assert.equal(g.text, doc.text);
  assert.deepEqual(g.metadata, { lang: 'en', product: 'store' });

  r = await postJson(srv.base, '/v1/documents', { ...doc, text: '# Refunds\n\nCard refunds now take 2 business days.' });
  assert.equal(r.json.documents[0].status, 'updated');
  const s = await postJson(srv.base, '/v1/search', { query: 'card refunds business days', top_k: 5 });
  assert.equal(s.status, 200);
  const texts = s.json.results.filter((x) => x.document_id === 'policy/refunds').map((x) => x.snippet);
  assert.ok(texts.some((t) => t.includes('2 business days')), JSON.stringify(texts));
  assert.ok(!texts.some((t) => t.includes('3 business days')), 'old version still searchable');

  const batch = await postJson(srv.base, '/v1/documents', {
    documents: [
      { id: 'a', text: 'alpha document about parcels' },
      { id: 'b', text: 'bravo document about coupons' },
      { id: 'c', text: 'charlie document about passwords' },
    ],
  });
  assert.equal(batch.status, 200, batch.text);
  assert.deepEqual(batch.json.documents.map((d) => d.id), ['a', 'b', 'c']);

  const seen = [];
  let cursor = '';
  for (let page = 0; page < 10; page++) {
    const l = await fetch(`${srv.base}/v1/documents?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.equal(l.status, 200);
    const body = await l.json();
    assert.ok(body.documents.length <= 2);
    seen.push(...body.documents.map((d) => d.id));
    if (!body.next_cursor) break;
    cursor = body.next_cursor;
  }
  assert.deepEqual(seen, ['a', 'b', 'c', 'policy/refunds']);

  const del = await fetch(srv.base + '/v1/documents/b', { method: 'DELETE' });
  assert.equal(del.status, 200);
  const gone = await fetch(srv.base + '/v1/documents/b');
  assertProblem({ status: gone.status, headers: gone.headers, json: await gone.json(), text: '' }, 404, 'document_not_found');
  const s2 = await postJson(srv.base, '/v1/search', { query: 'bravo coupons' });
  assert.ok(!s2.json.results.some((x) => x.document_id === 'b'), 'deleted document still found');
  const del2 = await fetch(srv.base + '/v1/documents/b', { method: 'DELETE' });
  assert.equal(del2.status, 404);
});

test('search ranks the sample knowledge base, Korean and English', async () => {
  await ingestSampleKb(srv.base);
  let r = await postJson(srv.base, '/v1/search', { query: '결제 수단별 환불 기간', top_k: 3 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.results.length, 3);
  assert.match(r.json.results[0].document_id, /^ko\/refund-timing/);
  r = await postJson(srv.base, '/v1/search', { query: '비밀번호를 잊어버렸어요', top_k: 3 });
  assert.match(r.json.results[0].document_id, /^ko\/account-signup-and-password/);
  for (let i = 1; i < r.json.results.length; i++) assert.ok(r.json.results[i - 1].score >= r.json.results[i].score);
  for (const x of r.json.results) for (const k of ['document_id', 'chunk_id', 'title', 'url', 'snippet', 'score']) assert.ok(k in x, k);

  r = await postJson(srv.base, '/v1/search', { query: 'Where is my tracking number?', top_k: 3 });
  assert.match(r.json.results[0].document_id, /^en\/order-tracking/);

  // Query syntax is never interpreted.
  for (const q of ['"', 'NEAR(', '* refund', 'refund -card', 'AND OR NOT', '((', 'col:refund', '^refund']) {
    const h = await postJson(srv.base, '/v1/search', { query: q });
    assert.equal(h.status, 200, `${q}: ${h.text}`);
  }
});

test('bad input gets the documented problem+json and the server keeps serving', async () => {
  assertProblem(await postJson(srv.base, '/v1/chat', '{"message": '), 400, 'invalid_json');
  const bad = await postJson(srv.base, '/v1/chat', '{"message": "a",}');
  assertProblem(bad, 400, 'invalid_json');
  assert.match(bad.json.detail, /byte \d+/);
  assertProblem(await postJson(srv.base, '/v1/chat', '[1,2]'), 400, 'invalid_json');
  assertProblem(await postJson(srv.base, '/v1/chat', { message: 42 }), 400, 'invalid_field');
  assertProblem(await postJson(srv.base, '/v1/chat', { message: 'hi', top_k: 'five' }), 400, 'invalid_field');
  assertProblem(await postJson(srv.base, '/v1/chat', { message: 'hi', top_k: 0 }), 400, 'invalid_field');
  assertProblem(await postJson(srv.base, '/v1/chat', { message: 'hi', stream: 'yes' }), 400, 'invalid_field');
  assertProblem(await postJson(srv.base, '/v1/chat', {}), 400, 'missing_field');
  assertProblem(await postJson(srv.base, '/v1/chat', { message: '   ' }), 400, 'invalid_field');
  assertProblem(await postJson(srv.base, '/v1/chat', { message: 'x'.repeat(9000) }), 400, 'invalid_field');
  assertProblem(await postJson(srv.base, '/v1/documents', { title: 'no text' }), 400, 'invalid_document');
  assertProblem(await postJson(srv.base, '/v1/documents', { id: 'x', text: 42 }), 400, 'invalid_document');
  assertProblem(await postJson(srv.base, '/v1/documents', { id: 'x', text: 'hi', format: 'pdf' }), 400, 'invalid_document');
  assertProblem(await postJson(srv.base, '/v1/documents', { documents: [] }), 400, 'invalid_field');

  const invalidUtf8 = Buffer.concat([Buffer.from('{"message": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
  const u = await postJson(srv.base, '/v1/chat', invalidUtf8);
  assertProblem(u, 400, 'invalid_utf8');
  assert.match(u.json.detail, /byte 16/);

  const big = await postJson(srv.base, '/v1/documents', JSON.stringify({ id: 'big', text: 'a'.repeat(10 * 1024 * 1024) }));
  assertProblem(big, 413, 'body_too_large');
  const missing = await fetch(srv.base + '/v1/documents/big');
  assert.equal(missing.status, 404, 'an oversized document must not be stored');

  const wrongType = await fetch(srv.base + '/v1/chat', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"message":"hi"}' });
  assertProblem({ status: wrongType.status, headers: wrongType.headers, json: await wrongType.json() }, 415, 'unsupported_media_type');

  const unknown = await fetch(srv.base + '/v1/nope');
  assertProblem({ status: unknown.status, headers: unknown.headers, json: await unknown.json() }, 404, 'not_found');
  const wrongMethod = await fetch(srv.base + '/v1/chat', { method: 'GET' });
  assertProblem({ status: wrongMethod.status, headers: wrongMethod.headers, json: await wrongMethod.json() }, 405, 'method_not_allowed');
  assert.equal(wrongMethod.headers.get('allow'), 'POST');

  // Invalid UTF-8 inside a document never half-writes it.
  const badDoc = Buffer.concat([Buffer.from('{"id":"half","text":"ok '), Buffer.from([0xff]), Buffer.from('"}')]);
  assertProblem(await postJson(srv.base, '/v1/documents', badDoc), 400, 'invalid_utf8');
  assert.equal((await fetch(srv.base + '/v1/documents/half')).status, 404);

  // Raw garbage on the socket does not take the server down. A request line
  // without NUL bytes is answered 400 at once; one with NUL bytes is left to
  // the connection timeout, so the client drops it.
  for (const garbage of ['GET /healthz\r\n\r\n', 'GARBAGE\r\n\r\n', '\x00\x01GARBAGE /\r\n\r\n']) {
    await new Promise((resolve) => {
      const s = net.connect(srv.port, '127.0.0.1', () => s.write(garbage));
      const timer = setTimeout(() => s.destroy(), 300);
      s.on('close', () => {
        clearTimeout(timer);
        resolve();
      });
      s.on('error', () => {});
      s.resume();
    });
  }
  const h = await fetch(srv.base + '/healthz');
  assert.equal(h.status, 200);
  assert.equal(srv.child.exitCode, null);
});

test('request ids: a sane incoming id is kept, a hostile one replaced', async () => {
  let r = await fetch(srv.base + '/healthz', { headers: { 'x-request-id': 'abc-123' } });
  assert.equal(r.headers.get('x-request-id'), 'abc-123');
  r = await fetch(srv.base + '/healthz', { headers: { 'x-request-id': 'bad id<script>' } });
  assert.match(r.headers.get('x-request-id'), /^req_[0-9a-f]{24}$/);
});
