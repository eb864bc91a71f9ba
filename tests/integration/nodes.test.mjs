// Two ragd nodes on one PostgreSQL database (the throw-away cluster of the
// CTest fixture pg): a document ingested through one is found through the
// other, and a conversation started on one continues on the other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startServer, postJson, chatStream } from './helpers.mjs';

const urlFile = process.env.RAGD_TEST_PG_URL_FILE;
const serverUrl = urlFile ? readFileSync(urlFile, 'utf8').trim() : '';
// A schema of this run's own, chosen per process through the URI's options.
const schema = `ragd_nodes_${process.pid}`;
const storeUrl = `${serverUrl}?options=-csearch_path%3D${schema}`;

function psql(sql) {
  return execFileSync('psql', [serverUrl, '-qtAX', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    encoding: 'utf8',
  }).trim();
}

let a;
let b;

before(async () => {
  assert.ok(serverUrl, 'RAGD_TEST_PG_URL_FILE names the test server (CTest fixture pg)');
  psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
  const env = { RAGD_STORE: storeUrl, RAGD_STORE_POOL: '3' };
  // Started together: both migrate the empty schema; the advisory lock lets
  // exactly one create it.
  [a, b] = await Promise.all([startServer({ env }), startServer({ env })]);
});

after(async () => {
  await a?.stop();
  await b?.stop();
  if (serverUrl) psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
});

test('a document ingested on node A is found by keyword search on node B', async () => {
  const doc = {
    id: 'policy/llama-boarding',
    title: 'Llama boarding',
    text: '# Llama boarding\n\nLlamas may board the ferry with a zygomorphic harness only.',
  };
  const put = await postJson(a.base, '/v1/documents', doc);
  assert.equal(put.status, 200, put.text);
  const found = await postJson(b.base, '/v1/search', { query: 'zygomorphic harness', top_k: 3 });
  assert.equal(found.status, 200, found.text);
  assert.ok(found.json.results.length >= 1, found.text);
  assert.equal(found.json.results[0].document_id, 'policy/llama-boarding');
  const got = await fetch(`${b.base}/v1/documents/policy/llama-boarding`);
  assert.equal(got.status, 200);

  // Deleted on B, gone on A.
  const del = await fetch(`${b.base}/v1/documents/policy/llama-boarding`, { method: 'DELETE' });
  assert.ok(del.status === 200 || del.status === 204, `delete: ${del.status}`);
  const gone = await postJson(a.base, '/v1/search', { query: 'zygomorphic harness', top_k: 3 });
  assert.equal(gone.json.results.length, 0, gone.text);
});

test('a conversation started on node A continues on node B', async () => {
  await postJson(a.base, '/v1/documents', {
    id: 'faq/refunds',
    title: 'Refunds',
    text: 'Refunds reach the card within five business days after the return arrives.',
  });
  const first = await chatStream(a.base, { message: 'How long do refunds take?' });
  const meta = first.events.find((e) => e.event === 'meta');
  assert.ok(meta, JSON.stringify(first.events));
  const conversationId = JSON.parse(meta.data).conversation_id;
  assert.match(conversationId, /^conv_[0-9a-f]+$/);
  assert.equal(first.events.at(-1).event, 'done');

  const second = await chatStream(b.base, {
    message: 'And to a bank account?',
    conversation_id: conversationId,
  });
  const meta2 = second.events.find((e) => e.event === 'meta');
  assert.equal(JSON.parse(meta2.data).conversation_id, conversationId);
  assert.equal(second.events.at(-1).event, 'done');

  // Both turns of both nodes are in the one database, in order.
  const rows = psql(
    `SELECT string_agg(role || ':' || left(content, 24), '|' ORDER BY id) FROM ${schema}.messages` +
      ` WHERE conversation_id = '${conversationId}'`,
  ).split('|');
  assert.equal(rows.length, 4, rows.join('\n'));
  assert.match(rows[0], /^user:How long do refunds take/);
  assert.match(rows[1], /^assistant:/);
  assert.match(rows[2], /^user:And to a bank account/);
  assert.match(rows[3], /^assistant:/);
});
