// Two ragd nodes on one PostgreSQL database with pgvector (PGlite's socket
// server, CTest fixture pglite): vector search runs in the database, so a
// document ingested through node A is found by a vector-only search on node
// B at once, with no restart, filters applied in the same query; and the
// rankings match the in-memory index of a SQLite node on the same corpus.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startServer, postJson, ingestSampleKb } from './helpers.mjs';

const urlFile = process.env.RAGD_TEST_PGLITE_URL_FILE;
const storeUrl = urlFile ? readFileSync(urlFile, 'utf8').trim() : '';
const search = (node, body) => postJson(node.base, '/v1/search', body);

// PGlite runs every client on one shared session (startup options such as
// search_path are ignored): this test owns the public tables while it runs
// (CTest RESOURCE_LOCK pglite) and starts from empty ones.
function dropTables() {
  execFileSync('psql', [storeUrl, '-qtAX', '-v', 'ON_ERROR_STOP=1', '-c',
    'SET client_min_messages = warning; DROP TABLE IF EXISTS ragd_schema_migrations, api_keys, rate_limits,'
    + ' feedback, messages, conversations, vectors, chunks, documents, blobs CASCADE'], { encoding: 'utf8' });
}

let a;
let b;
let lite;

before(async () => {
  assert.ok(storeUrl, 'RAGD_TEST_PGLITE_URL_FILE names the PGlite server (CTest fixture pglite)');
  dropTables();
  // RAGD_VECTOR_INDEX is left at its default (auto): the store's search.
  const env = { RAGD_STORE: storeUrl, RAGD_STORE_POOL: '2', RAGD_LOG_LEVEL: 'info' };
  a = await startServer({ env });
  b = await startServer({ env });
  lite = await startServer({}); // SQLite, in-memory vector index, same corpus
});

after(async () => {
  await a?.stop();
  await b?.stop();
  await lite?.stop();
  if (storeUrl) dropTables();
});

test('both nodes search vectors in PostgreSQL (pgvector), not in memory', () => {
  for (const node of [a, b]) assert.match(node.stderr(), /vector search: in the postgres store/);
});

test('a document ingested on node A is found by a vector-only search on node B at once', async () => {
  const doc = {
    id: 'policy/llama-boarding',
    title: 'Llama boarding',
    text: '# Llama boarding\n\nLlamas may board the ferry with a zygomorphic harness only.',
    metadata: { team: 'ferries' },
  };
  const put = await postJson(a.base, '/v1/documents', doc);
  assert.equal(put.status, 200, put.text);
  const found = await search(b, { query: 'zygomorphic llama harness', mode: 'vector', top_k: 3 });
  assert.equal(found.status, 200, found.text);
  assert.equal(found.json.mode, 'vector');
  const top = found.json.results[0];
  assert.equal(top?.document_id, 'policy/llama-boarding', found.text);
  assert.equal(top.vector.rank, 1);
  assert.ok(top.vector.score > 0.3 && top.vector.score <= 1.0001, found.text);
  assert.equal(top.keyword, null);

  // metadata filters in the same query
  const kept = await search(b, { query: 'zygomorphic llama harness', mode: 'vector', filters: { team: 'ferries' } });
  assert.deepEqual(kept.json.results.map((x) => x.document_id), ['policy/llama-boarding'], kept.text);
  const none = await search(b, { query: 'zygomorphic llama harness', mode: 'vector', filters: { team: 'trains' } });
  assert.deepEqual(none.json.results, [], none.text);

  // deleted on B: gone from A's vector search too
  const del = await fetch(`${b.base}/v1/documents/policy/llama-boarding`, { method: 'DELETE' });
  assert.ok(del.status === 200 || del.status === 204, `delete: ${del.status}`);
  const gone = await search(a, { query: 'zygomorphic llama harness', mode: 'vector', top_k: 3 });
  assert.ok(gone.json.results.every((x) => x.document_id !== 'policy/llama-boarding'), gone.text);
});

test('vector and hybrid rankings match the in-memory index of a SQLite node', async () => {
  await ingestSampleKb(a.base);
  await ingestSampleKb(lite.base);
  for (const query of ['How long does a card refund take?', '비밀번호를 잊어버렸어요', 'change delivery address']) {
    for (const mode of ['vector', 'hybrid']) {
      const pg = await search(b, { query, mode, top_k: 5 });
      const sq = await search(lite, { query, mode, top_k: 5 });
      assert.equal(pg.status, 200, pg.text);
      assert.ok(pg.json.results.length > 0, `${mode} ${query}: nothing`);
      assert.deepEqual(pg.json.results.map((x) => x.chunk_id), sq.json.results.map((x) => x.chunk_id),
        `${mode} ${query}`);
      pg.json.results.forEach((x, i) => {
        const y = sq.json.results[i];
        assert.ok(Math.abs(x.score - y.score) < 1e-3, `${mode} ${query} #${i}: ${x.score} vs ${y.score}`);
        if (x.vector) assert.ok(Math.abs(x.vector.score - y.vector.score) < 1e-3, `${mode} ${query} #${i} vector`);
      });
    }
  }
});
