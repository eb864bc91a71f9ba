// Two ragd nodes on one PostgreSQL database (the throw-away cluster of the
// CTest fixture pg): a document ingested through one is found through the
// other, a conversation started on one continues on the other, its
// transcript and the feedback on its answers are the same on both, and an
// API key made or revoked on the shared database holds for both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startServer, postJson, chatStream, runRagd, sleep } from './helpers.mjs';

const urlFile = process.env.RAGD_TEST_PG_URL_FILE;
const serverUrl = urlFile ? readFileSync(urlFile, 'utf8').trim() : '';
// A schema of this run's own, chosen per process through the URI's options.
const schema = `ragd_nodes_${process.pid}`;
const storeUrl = `${serverUrl}?options=-csearch_path%3D${schema}`;
// Debian 12 packages no pgvector: these nodes keep their vectors in memory
// (RAGD_VECTOR_INDEX=int8), the documented opt-out. Vector search in the
// database across nodes is nodes_pgvector.test.mjs, on PGlite.
const pgEnv = { RAGD_STORE: storeUrl, RAGD_VECTOR_INDEX: 'int8' };

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
  const env = { ...pgEnv, RAGD_STORE_POOL: '3' };
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

test('without pgvector, start-up fails by default and says how to enable it', async () => {
  const r = await runRagd(['search', 'refund'], { env: { RAGD_STORE: storeUrl } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /needs pgvector/);
  assert.match(r.stderr, /postgresql-1[0-9]-pgvector from the PGDG/);
  assert.match(r.stderr, /CREATE EXTENSION vector;/);
  assert.match(r.stderr, /RAGD_VECTOR_INDEX=int8/);
  assert.doesNotMatch(r.stderr, /ragd_nodes_|127\.0\.0\.1/, 'the URI is never echoed');
});

const eventData = (events, name) => {
  const ev = events.find((e) => e.event === name);
  assert.ok(ev, `a ${name} event among ${events.map((e) => e.event).join(',')}`);
  return JSON.parse(ev.data);
};

// Set by the conversation test for the transcript and feedback test.
let conversation;

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
  conversation = {
    id: conversationId,
    answers: [eventData(first.events, 'done').message_id, eventData(second.events, 'done').message_id],
  };
});

test('the transcript and feedback of a conversation are the same on both nodes', async () => {
  assert.ok(conversation, 'the conversation test ran first');
  const { id, answers } = conversation;
  const transcript = async (node) => {
    const r = await fetch(`${node.base}/v1/conversations/${id}`);
    assert.equal(r.status, 200, `GET transcript: ${r.status}`);
    return r.json();
  };

  // Each node's answer under the id its done event gave, on either node.
  const onA = await transcript(a);
  assert.deepEqual(onA, await transcript(b));
  assert.equal(onA.id, id);
  assert.deepEqual(onA.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
  for (const m of onA.messages) assert.match(m.id, /^msg_[0-9a-f]{24}$/);
  assert.deepEqual(onA.messages.filter((m) => m.role === 'assistant').map((m) => m.id), answers);
  assert.equal(onA.messages[0].retrieval_query, 'How long do refunds take?');
  assert.ok(onA.messages[2].retrieval_query.endsWith('And to a bank account?'), onA.messages[2].retrieval_query);
  for (const m of onA.messages.filter((x) => x.role === 'assistant')) {
    assert.equal(m.provider, 'extractive');
    assert.equal(m.finish_reason, 'stop');
    assert.ok(m.sources.length > 0 && m.sources[0].document_id === 'faq/refunds', JSON.stringify(m.sources));
    assert.ok(Number.isInteger(m.tokens) && m.tokens > 0);
    assert.equal(m.feedback, null);
  }

  // Rated on A (B's answer), changed on B: one rating, created once.
  const fb = (node, mid, body) => postJson(node.base, `/v1/conversations/${id}/messages/${mid}/feedback`, body);
  let r = await fb(a, answers[1], { rating: 'down', comment: 'needs the bank transfer time' });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.created, true);
  r = await fb(b, answers[1], { rating: 'up', comment: 'fine after all' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.created, false);
  // The first answer rated on both nodes at once: exactly one creates it.
  const both = await Promise.all([fb(a, answers[0], { rating: 'up' }), fb(b, answers[0], { rating: 'down' })]);
  assert.deepEqual(both.map((x) => x.status).sort(), [200, 201], both.map((x) => x.text).join('\n'));
  assert.deepEqual(both.map((x) => x.json.created).sort(), [false, true]);
  const last = both.find((x) => x.status === 200).json.rating;

  const rated = await transcript(b);
  assert.deepEqual(rated, await transcript(a));
  assert.deepEqual(rated.messages[3].feedback, { rating: 'up', comment: 'fine after all' });
  assert.deepEqual(rated.messages[1].feedback, { rating: last, comment: '' });
  // A question is not rateable on either node.
  r = await fb(b, rated.messages[0].id, { rating: 'up' });
  assert.equal(r.status, 404, r.text);
  assert.equal(r.json.code, 'message_not_found');

  // The export reads the same database.
  const out = await runRagd(['feedback', 'export'], { env: pgEnv });
  assert.equal(out.code, 0, out.stderr);
  assert.ok(out.stdout.startsWith('updated_at,created_at,conversation_id,message_id,'), out.stdout);
  assert.ok(out.stdout.includes(`,${id},${answers[0]},${last},,How long do refunds take?,`), out.stdout);
  assert.ok(out.stdout.includes(`,${id},${answers[1]},up,fine after all,And to a bank account?,`), out.stdout);

  // Deleted on B: gone on A, its feedback with it.
  r = await fetch(`${b.base}/v1/conversations/${id}`, { method: 'DELETE' });
  assert.equal(r.status, 200);
  r = await fetch(`${a.base}/v1/conversations/${id}`);
  assert.equal(r.status, 404);
  assert.equal((await r.json()).code, 'conversation_not_found');
  r = await fb(a, answers[0], { rating: 'up' });
  assert.equal(r.status, 404, r.text);
  assert.equal(psql(`SELECT count(*) FROM ${schema}.feedback`), '0');
});

// `ragd keys create` on the shared database: the key is alone on the last
// line of stdout, its id in the line before.
async function createKey(...args) {
  const r = await runRagd(['keys', 'create', ...args], { env: pgEnv });
  assert.equal(r.code, 0, r.stderr);
  const key = r.stdout.trim().split('\n').at(-1);
  assert.match(key, /^rk_[A-Za-z0-9_-]{43}$/);
  const id = /key (rk_[A-Za-z0-9_-]{8})/.exec(r.stdout)[1];
  return { key, id };
}

// Last: once a key exists, both loopback nodes require one.
test('an API key made on the shared database works on both nodes; revoked, both refuse it', async () => {
  const bearer = (key) => (key ? { authorization: `Bearer ${key}` } : {});
  const search = (node, key) => postJson(node.base, '/v1/search', { query: 'refunds' }, bearer(key));
  const query = await createKey('--scope', 'query', '--name', 'widget');
  const admin = await createKey('--scope', 'admin');
  // The database keeps the hash, never the key.
  const stored = psql(`SELECT string_agg(public_id || ' ' || key_hash, ' ') FROM ${schema}.api_keys`);
  assert.ok(stored.includes(query.id) && stored.includes(admin.id), stored);
  assert.ok(!stored.includes(query.key) && !stored.includes(admin.key), stored);

  // Each node caches its answer about keys for 500 ms.
  await sleep(600);
  for (const node of [a, b]) {
    assert.equal((await search(node)).status, 401, `no key on ${node.base}`);
    assert.equal((await search(node, query.key)).status, 200, `query key on ${node.base}`);
    const put = await postJson(node.base, '/v1/documents',
      { id: 'faq/keys', text: 'Keys are shared.' }, bearer(query.key));
    assert.equal(put.status, 403, put.text);
    const ok = await postJson(node.base, '/v1/documents',
      { id: 'faq/keys', text: 'Keys are shared.' }, bearer(admin.key));
    assert.equal(ok.status, 200, ok.text);
  }

  // Revoked through the database both nodes use (`ragd keys revoke`, as an
  // operator would): each node refuses the key within about a second.
  const revoke = await runRagd(['keys', 'revoke', query.id], { env: pgEnv });
  assert.equal(revoke.code, 0, revoke.stderr);
  const revokedAt = Date.now();
  const refusedAfter = async (node) => {
    let status;
    while ((status = (await search(node, query.key)).status) === 200 && Date.now() - revokedAt < 3000)
      await sleep(20);
    assert.equal(status, 401, `revoked key on ${node.base}`);
    return Date.now() - revokedAt;
  };
  const took = await Promise.all([refusedAfter(a), refusedAfter(b)]);
  for (const ms of took) assert.ok(ms < 1200, `refused after ${took.join(' and ')} ms`);
  for (const node of [a, b]) assert.equal((await search(node, admin.key)).status, 200);
  const list = await runRagd(['keys', 'list'], { env: pgEnv });
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`${query.id}.*revoked`));

  // The last key revoked: both loopback nodes are open again.
  assert.equal((await runRagd(['keys', 'revoke', admin.id], { env: pgEnv })).code, 0);
  await sleep(600);
  for (const node of [a, b]) assert.equal((await search(node)).status, 200, `open again on ${node.base}`);
});

// Requests per minute are counted in the database both nodes share: a key
// allowed 20 a minute gets 20 in all, however the requests are spread.
test('a per-key rate limit holds across both nodes', async () => {
  const bearer = (key) => ({ authorization: `Bearer ${key}` });
  const limited = await createKey('--scope', 'query', '--rpm', '20');
  await sleep(600); // each node caches its answer about keys for 500 ms
  const statuses = { [a.base]: [], [b.base]: [] };
  let retryAfter;
  for (let i = 0; i < 30; i++) {
    const node = i % 2 ? b : a;
    const r = await postJson(node.base, '/v1/search', { query: 'refunds' }, bearer(limited.key));
    statuses[node.base].push(r.status);
    if (r.status === 429) {
      assert.equal(r.json.code, 'rate_limited');
      retryAfter = Number(r.headers.get('retry-after'));
    } else {
      assert.equal(r.status, 200, r.text);
    }
  }
  const ok = (list) => list.filter((s) => s === 200).length;
  const admitted = ok(statuses[a.base]) + ok(statuses[b.base]);
  // One process alone would have admitted 15 on each node (30 in all).
  assert.equal(admitted, 20, JSON.stringify(statuses));
  assert.ok(ok(statuses[a.base]) >= 5 && ok(statuses[b.base]) >= 5, JSON.stringify(statuses));
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  // The counter lives in an UNLOGGED table, one row per key.
  const row = psql(`SELECT count + prev_count, relpersistence FROM ${schema}.rate_limits, pg_class
                    WHERE name = 'key:${limited.id}' AND pg_class.oid = '${schema}.rate_limits'::regclass`);
  assert.match(row, /^20\|u$/, row);
  // Another key is not affected.
  const other = await createKey('--scope', 'query');
  await sleep(600);
  for (const node of [a, b])
    assert.equal((await postJson(node.base, '/v1/search', { query: 'refunds' }, bearer(other.key))).status, 200);
  for (const k of [limited, other])
    assert.equal((await runRagd(['keys', 'revoke', k.id], { env: pgEnv })).code, 0);
});
