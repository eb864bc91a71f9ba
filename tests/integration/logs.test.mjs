// Request ids and logs: every stderr line a served request produces is one
// JSON object carrying that request's id (also from the upstream thread),
// each request has exactly one access line with its route, status, duration,
// bytes and, for answers, provider and tokens; customer data never reaches
// the log unmasked, and at info level not at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, startFakeOpenAI, chatStream, postJson, sleep, SOURCE_DIR } from './helpers.mjs';

const EMAIL = 'jane.roe@example.com';
const CARD = '4111 1111 1111 1111';
const PHONE = '010-9876-5432';
const CLIENT_TOKEN = 'client-secret-token-0123456789';
const PII_MESSAGE = `My email is ${EMAIL}, card ${CARD}, phone ${PHONE}: how long does a refund take?`;

// The JSON lines logged after offset, parsed; fails on any line that is not
// a JSON object with ts, level and msg.
function linesAfter(stderr, offset) {
  return stderr
    .slice(offset)
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      let o;
      assert.doesNotThrow(() => (o = JSON.parse(l)), `not a JSON line: ${l}`);
      assert.equal(typeof o, 'object', l);
      assert.match(o.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
      assert.ok(['debug', 'info', 'warn', 'error'].includes(o.level), l);
      assert.equal(typeof o.msg, 'string', l);
      return o;
    });
}

// The start-up lines go to stderr before READY goes to stdout, but the two
// pipes are read separately, so some may arrive after startServer returns.
// Returns stderr's length once it has stopped growing for 200 ms (all of
// them were written before READY; the server is idle until the workload).
async function startupLogged(srv) {
  let len = srv.stderr().length;
  for (let quiet = 0, i = 0; quiet < 4 && i < 100; i++) {
    await sleep(50);
    const now = srv.stderr().length;
    quiet = now === len ? quiet + 1 : 0;
    len = now;
  }
  return len;
}

// Waits until every id has its access line (written when the response ends).
async function waitForAccessLines(srv, offset, ids) {
  for (let i = 0; i < 100; i++) {
    const lines = linesAfter(srv.stderr(), offset);
    if (ids.every((id) => lines.some((o) => o.request_id === id && o.route !== undefined))) return lines;
    await sleep(50);
  }
  throw new Error(`access lines missing:\n${srv.stderr().slice(offset)}`);
}

async function addDocuments(base, id) {
  const text = readFileSync(path.join(SOURCE_DIR, 'examples', 'kb', 'en', 'refund-timing.md'), 'utf8');
  return postJson(base, '/v1/documents', { id: 'refund-timing.md', text, format: 'markdown' },
    { 'x-request-id': id });
}

// Runs the scripted requests; returns [{id, route, method, status}] as the
// access lines must report them.
async function workload(base, prefix) {
  const want = [];
  const id = (n) => `${prefix}-${n}`;
  let r = await addDocuments(base, id(1));
  assert.equal(r.status, 200, r.text);
  want.push({ id: id(1), method: 'POST', route: '/v1/documents', status: 200 });

  r = await postJson(base, '/v1/search', { query: 'refund' }, { 'x-request-id': id(2) });
  assert.equal(r.status, 200);
  want.push({ id: id(2), method: 'POST', route: '/v1/search', status: 200 });

  const s = await chatStream(base, { message: PII_MESSAGE },
    { 'x-request-id': id(3), authorization: `Bearer ${CLIENT_TOKEN}` });
  assert.equal(s.status, 200);
  assert.equal(s.events.at(-1).event, 'done', s.text);
  assert.equal(JSON.parse(s.events[0].data).request_id, id(3));
  want.push({ id: id(3), method: 'POST', route: '/v1/chat', status: 200, answer: true });

  r = await postJson(base, '/v1/chat', { message: PII_MESSAGE, stream: false }, { 'x-request-id': id(4) });
  assert.equal(r.status, 200, r.text);
  want.push({ id: id(4), method: 'POST', route: '/v1/chat', status: 200, answer: true });

  r = await postJson(base, '/v1/chat', '{"message": ', { 'x-request-id': id(5) });
  assert.equal(r.status, 400);
  want.push({ id: id(5), method: 'POST', route: '/v1/chat', status: 400 });

  r = await fetch(base + '/no/such/route', { headers: { 'x-request-id': id(6) } });
  await r.text();
  assert.equal(r.status, 404);
  want.push({ id: id(6), method: 'GET', route: 'unmatched', status: 404 });

  // An id that is not sane is replaced; the header says by what.
  r = await fetch(base + '/healthz', { headers: { 'x-request-id': 'bad id with spaces' } });
  await r.text();
  const generated = r.headers.get('x-request-id');
  assert.match(generated, /^req_[0-9a-f]{24}$/);
  want.push({ id: generated, method: 'GET', route: '/healthz', status: 200 });
  return want;
}

function checkAccessLines(lines, want, provider) {
  const ids = new Set(want.map((w) => w.id));
  for (const o of lines) assert.ok(ids.has(o.request_id), `a line without a request id of the workload: ${JSON.stringify(o)}`);
  for (const w of want) {
    const access = lines.filter((o) => o.request_id === w.id && o.route !== undefined);
    assert.equal(access.length, 1, `one access line for ${w.id}: ${JSON.stringify(access)}`);
    const a = access[0];
    assert.equal(a.level, 'info');
    assert.equal(a.method, w.method);
    assert.equal(a.route, w.route);
    assert.equal(a.status, w.status);
    assert.equal(a.msg, `${w.method} ${w.route} ${w.status}`);
    assert.ok(typeof a.duration_ms === 'number' && a.duration_ms >= 0, JSON.stringify(a));
    assert.ok(Number.isInteger(a.bytes) && a.bytes > 0, JSON.stringify(a));
    assert.equal(a.ended, undefined, JSON.stringify(a));
    if (w.answer) {
      assert.equal(a.provider, provider, JSON.stringify(a));
      assert.equal(typeof a.model, 'string');
      assert.ok(a.prompt_tokens > 0 && a.completion_tokens > 0, JSON.stringify(a));
      assert.equal(a.finish_reason, 'stop');
    } else {
      assert.equal(a.provider, undefined, JSON.stringify(a));
    }
  }
}

function assertNoSecrets(stderr) {
  for (const s of [EMAIL, CARD, PHONE, CLIENT_TOKEN, 'sk-upstream-key'])
    assert.ok(!stderr.includes(s), `"${s}" reached the log:\n${stderr}`);
}

test('info level: JSON lines with request ids, one access line per request, no customer text', async (t) => {
  const srv = await startServer({ env: { RAGD_LOG_LEVEL: 'info' } });
  t.after(() => srv.stop());
  const offset = await startupLogged(srv);
  const want = await workload(srv.base, 'info');
  const lines = await waitForAccessLines(srv, offset, want.map((w) => w.id));
  checkAccessLines(lines, want, 'extractive');
  // Nothing but access lines at info for this workload, and no question text.
  assert.deepEqual(lines.filter((o) => o.route === undefined), []);
  assertNoSecrets(srv.stderr());
  assert.ok(!srv.stderr().includes('refund take'), srv.stderr());
});

test('debug level: upstream-thread lines carry the request id and the question is masked', async (t) => {
  const fake = await startFakeOpenAI(['--text', 'Refunds take 3 business days [1].']);
  t.after(() => fake.stop());
  const srv = await startServer({
    env: {
      RAGD_LOG_LEVEL: 'debug', RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_API_KEY: 'sk-upstream-key-abcdefghijklmnop',
      RAGD_LLM_RETRIES: '2', RAGD_LLM_RETRY_BASE_MS: '1', RAGD_LLM_RETRY_MAX_DELAY_MS: '5',
    },
  });
  t.after(() => srv.stop());
  const offset = await startupLogged(srv);
  // The first attempt of each answer fails once: the retry is logged by the
  // upstream thread, which must know whose request it is.
  await fake.configure({ fail_first: 1, fail_status: 503 });
  const want = [];
  const id = (n) => `dbg-${n}`;
  assert.equal((await addDocuments(srv.base, id(1))).status, 200);
  want.push({ id: id(1), method: 'POST', route: '/v1/documents', status: 200 });
  const s = await chatStream(srv.base, { message: PII_MESSAGE }, { 'x-request-id': id(2) });
  assert.equal(s.events.at(-1).event, 'done', s.text);
  want.push({ id: id(2), method: 'POST', route: '/v1/chat', status: 200, answer: true });

  const lines = await waitForAccessLines(srv, offset, want.map((w) => w.id));
  checkAccessLines(lines, want, 'openai');
  const retry = lines.filter((o) => /attempt 1 failed \(HTTP 503\)/.test(o.msg));
  assert.equal(retry.length, 1, srv.stderr());
  assert.equal(retry[0].request_id, id(2));
  assert.equal(retry[0].level, 'debug');
  const question = lines.filter((o) => /question/.test(o.msg));
  assert.equal(question.length, 1, srv.stderr());
  assert.equal(question[0].request_id, id(2));
  for (const placeholder of ['[EMAIL]', '[CARD]', '[PHONE]']) assert.ok(question[0].msg.includes(placeholder), question[0].msg);
  assertNoSecrets(srv.stderr());
  // The request id went upstream too.
  const sent = (await fake.log()).filter((r) => r.method === 'POST');
  assert.ok(sent.length >= 2 && sent.every((r) => r.headers['x-request-id'] === id(2)), JSON.stringify(sent.map((r) => r.headers)));
});
