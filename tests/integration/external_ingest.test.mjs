// A running `ragd serve` sees documents that a separate `ragd ingest`
// process writes to the same SQLite data folder, without a restart: by
// keyword and by vector (issue 3). The server notices the store's
// data_version move and reads only the new chunks into its indexes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, postJson, runRagd, tempDir, sleep } from './helpers.mjs';

const search = (base, body) => postJson(base, '/v1/search', body);

// Searches until a hit of doc shows up (the server looks at the store at most
// every 200 ms), up to 5 s; returns the last response.
async function searchUntil(base, body, doc) {
  let r;
  for (let i = 0; i < 50; i++) {
    r = await search(base, body);
    assert.equal(r.status, 200, r.text);
    if (r.json.results.some((h) => h.document_id.endsWith(doc))) return r;
    await sleep(100);
  }
  return r;
}

test('documents ingested by another process are found by the running server', async (t) => {
  const data = tempDir();
  const files = tempDir();
  t.after(() => { rmSync(data, { recursive: true, force: true }); rmSync(files, { recursive: true, force: true }); });
  mkdirSync(path.join(files, 'first'));
  mkdirSync(path.join(files, 'later'));
  writeFileSync(path.join(files, 'first', 'refunds.md'), '# Refunds\n\nCard refunds take three to five business days.\n');
  let r = await runRagd(['ingest', '--data', data, path.join(files, 'first')]);
  assert.equal(r.code, 0, r.stderr);
  const srv = await startServer({ data });
  t.after(() => srv.stop());

  const q = { query: 'zorbulite warranty claim', top_k: 5 };
  r = await search(srv.base, { ...q, mode: 'keyword' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.results.length, 0, 'nothing about zorbulite yet');

  // another process writes to the same data folder while the server runs
  writeFileSync(path.join(files, 'later', 'zorbulite.md'),
    '# Zorbulite warranty\n\nA zorbulite warranty claim needs the serial number and the receipt.\n');
  r = await runRagd(['ingest', '--data', data, path.join(files, 'later')]);
  assert.equal(r.code, 0, r.stderr);

  const kw = await searchUntil(srv.base, { ...q, mode: 'keyword' }, 'zorbulite.md');
  assert.ok(kw.json.results[0]?.document_id.endsWith('zorbulite.md'), kw.text);
  const vec = await searchUntil(srv.base, { ...q, mode: 'vector' }, 'zorbulite.md');
  assert.ok(vec.json.results[0]?.document_id.endsWith('zorbulite.md'), vec.text);
  const hyb = await search(srv.base, q);
  assert.ok(hyb.json.results[0]?.document_id.endsWith('zorbulite.md'), hyb.text);
  assert.ok(hyb.json.results[0].keyword?.rank >= 1 && hyb.json.results[0].vector?.rank >= 1, hyb.text);

  // the other process rewrites the document: the old text is gone from the
  // keyword index. (Not the last document stored: see docs/retrieval.md for
  // the case of the last one, whose new chunks can reuse its old row ids.)
  mkdirSync(path.join(files, 'tail'));
  writeFileSync(path.join(files, 'tail', 'shipping.md'), '# Shipping\n\nParcels ship within two days.\n');
  r = await runRagd(['ingest', '--data', data, path.join(files, 'tail')]);
  assert.equal(r.code, 0, r.stderr);
  writeFileSync(path.join(files, 'later', 'zorbulite.md'),
    '# Zorbulite warranty\n\nClaims now go through the quxparts portal.\n');
  r = await runRagd(['ingest', '--data', data, path.join(files, 'later')]);
  assert.equal(r.code, 0, r.stderr);
  const now = await searchUntil(srv.base, { query: 'quxparts portal', mode: 'keyword', top_k: 5 }, 'zorbulite.md');
  assert.ok(now.json.results[0]?.document_id.endsWith('zorbulite.md'), now.text);
  r = await search(srv.base, { query: 'serial receipt', mode: 'keyword', top_k: 5 });
  assert.ok(!r.json.results.some((h) => h.document_id.endsWith('zorbulite.md')), r.text);
});
