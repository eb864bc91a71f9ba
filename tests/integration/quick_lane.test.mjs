// Health, metrics and the chat page run on their own one-thread pool
// (enum http_lane): with the only worker busy ingesting a large document,
// /healthz, /readyz and /metrics still answer before the ingest does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, postJson } from './helpers.mjs';

test('health and metrics do not wait behind a busy worker', async (t) => {
  const srv = await startServer({ env: { RAGD_WORKERS: '1', RAGD_MAX_BODY_BYTES: '67108864' } });
  t.after(() => srv.stop());
  // Several MB of distinct paragraphs: seconds of chunking and embedding.
  const paras = [];
  for (let i = 0; i < 40000; i++) paras.push(`Paragraph ${i} about order ${i * 7919} and refund case ${i % 97}.`);
  let ingestDone = 0;
  const ingest = postJson(srv.base, '/v1/documents', { id: 'big', text: paras.join('\n\n'), format: 'markdown' }).then((r) => {
    ingestDone = Date.now();
    return r;
  });
  await new Promise((r) => setTimeout(r, 300)); // the worker has the ingest by now
  const quick = [];
  for (const route of ['/healthz', '/readyz', '/metrics', '/']) {
    const res = await fetch(srv.base + route);
    assert.equal(res.status, 200, route);
    await res.arrayBuffer();
    quick.push([route, Date.now()]);
  }
  const r = await ingest;
  assert.equal(r.status, 200, r.text);
  for (const [route, at] of quick)
    assert.ok(at < ingestDone, `${route} answered ${at - ingestDone} ms after the ingest, not before it`);
});
