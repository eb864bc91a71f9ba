// The fault-injection suite: each upstream failure the fakes can play, seen
// from the client. For every behaviour one test asserts the exact event
// sequence (or error code), which provider answered (meta / notice), how many
// requests the fake upstream saw (retries), and that ragd's open file
// descriptors and resident memory come back to their baseline afterwards.
//
// The chain is PRIMARY (fake A, where the faults are injected) -> BACKUP
// (fake B, normally healthy) -> the implicit extractive last resort. Timeouts
// are short so every hang resolves in about a second; breakers are off
// (RAGD_LLM_BREAKER_MIN_REQUESTS=0) so that one test's failures do not open
// A's breaker for the next (breakers have resilience.test.mjs).
//
// Baseline: after a warm-up answer from each fake, /proc/<pid>/fd and VmRSS
// of the server. After each test the fakes close their idle connections and
// a recovery answer goes to each fake again (so curl's connection cache holds
// exactly what it held at baseline: one idle connection per fake; a leaked
// socket stays open), then the fd count must equal the baseline
// exactly (polled for up to FD_SETTLE_MS while closes are processed) and
// VmRSS may exceed it by at most RSS_TOLERANCE (malloc keeps freed arenas;
// ASan keeps freed memory in quarantine, hence a wider bound under it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { startServer, startFakeOpenAI, runRagd, tempDir, parseSse, sleep, SOURCE_DIR } from './helpers.mjs';

const FD_SETTLE_MS = 3000;
const MIB = 1024 * 1024;

const A_TEXT = ' Refunds are issued within 3 business days [1].';
const B_TEXT = ' Backup says refunds take 3 business days [1].';
// Enough tokens that a 2 ms/byte drip cannot finish within the total timeout.
const DRIP_TEXT = Array.from({ length: 60 }, (_, i) => ` word${i}`).join('');
const QUESTION = 'How long do refunds take?';

const TIMEOUTS = {
  RAGD_LLM_CONNECT_TIMEOUT_MS: '1000',
  RAGD_LLM_FIRST_TOKEN_TIMEOUT_MS: '2500',
  RAGD_LLM_IDLE_TIMEOUT_MS: '1000',
  RAGD_LLM_TIMEOUT_MS: '4000',
  RAGD_LLM_RETRIES: '2',
  RAGD_LLM_RETRY_BASE_MS: '10',
  RAGD_LLM_RETRY_MAX_DELAY_MS: '50',
  RAGD_LLM_BREAKER_MIN_REQUESTS: '0',
};

function chainEnv(primaryUrl, backupUrl) {
  return {
    ...TIMEOUTS,
    RAGD_LLM_CHAIN: 'primary,backup',
    RAGD_LLM_PRIMARY_PROVIDER: 'openai',
    RAGD_LLM_PRIMARY_BASE_URL: primaryUrl,
    RAGD_LLM_PRIMARY_MODEL: 'model-a',
    RAGD_LLM_BACKUP_PROVIDER: 'openai',
    RAGD_LLM_BACKUP_BASE_URL: backupUrl,
    RAGD_LLM_BACKUP_MODEL: 'model-b',
  };
}

// ---- process measurements -------------------------------------------------

function fdList(pid) {
  const dir = `/proc/${pid}/fd`;
  const out = [];
  for (const name of readdirSync(dir)) {
    let target = '?';
    try {
      target = readlinkSync(`${dir}/${name}`);
    } catch {
      continue; // closed between readdir and readlink
    }
    out.push(`${name} -> ${target}`);
  }
  return out;
}

function rssBytes(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

function sanitized(pid) {
  return /libasan|libubsan/.test(readFileSync(`/proc/${pid}/maps`, 'utf8'));
}

// ---- the client -----------------------------------------------------------

// POSTs a question to /v1/chat on a connection of its own that closes after
// the response (no keep-alive pool holding fds in ragd), and parses the stream
// (or, for "stream": false, the JSON). firstAt / endAt: when the first and
// the last bytes arrived.
function ask(base, body) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(base + '/v1/chat', {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', connection: 'close' },
    }, (res) => {
      const parts = [];
      let firstAt;
      res.on('data', (c) => {
        firstAt ??= Date.now();
        parts.push(c);
      });
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        const endAt = Date.now();
        if (body.stream === false) {
          resolve({ status: res.statusCode, text, json: JSON.parse(text), firstAt, endAt });
          return;
        }
        const parsed = parseSse(text);
        const events = parsed.events.map((e) => ({ ...e, json: JSON.parse(e.data) }));
        resolve({ status: res.statusCode, text, events, elapsed: endAt - started, firstAt, endAt });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

// Event names with runs of text_delta collapsed, for sequence comparisons.
function names(r) {
  const out = [];
  for (const e of r.events) {
    const n = e.event === 'text_delta' ? 'text_delta+' : e.event;
    if (!(n === 'text_delta+' && out.at(-1) === n)) out.push(n);
  }
  return out;
}

function answerText(r) {
  return r.events.filter((e) => e.event === 'text_delta').map((e) => e.json.content).join('');
}

function notices(r) {
  return r.events.filter((e) => e.event === 'notice').map((e) => e.json);
}

// The contract every stream keeps, whatever failed: 200, ids in sequence,
// exactly one terminal event and it is the last.
function checkStream(r) {
  assert.equal(r.status, 200, r.text);
  const id = r.events[0]?.json.response_id;
  r.events.forEach((e, i) => {
    assert.equal(e.json.type, e.event);
    assert.equal(e.id, `${id}.${i}`);
  });
  assert.equal(r.events[0].event, 'meta', r.text);
  assert.equal(r.events.filter((e) => e.event === 'done' || e.event === 'error').length, 1, r.text);
  assert.ok(['done', 'error'].includes(r.events.at(-1).event), r.text);
  assert.ok(r.text.endsWith('\n\n'), 'the stream ends on an event boundary');
}

// ---- fixtures -------------------------------------------------------------

let fakeA;
let fakeB;
let srv;
let dataDir;
let baseline;

async function clearLogs() {
  await fetch(fakeA.base + '/__admin/log', { method: 'DELETE' });
  await fetch(fakeB.base + '/__admin/log', { method: 'DELETE' });
}

// Makes both fakes close their idle keep-alive connections: curl's cache
// then holds only dead ones, which it drops on its next request to that host.
async function closeIdle() {
  for (const f of [fakeA, fakeB]) await fetch(f.base + '/__admin/close-idle', { method: 'POST' });
  await sleep(50);
}

// The fakes close idle connections, then one healthy answer from A and one
// from B (A failing with a 400, which is not retried): leaves exactly one
// idle upstream connection per fake in curl's cache, however many a
// concurrent batch had opened.
async function recover(server = srv) {
  await closeIdle();
  await fakeA.configure({ reset: true, text: A_TEXT });
  await fakeB.configure({ reset: true, text: B_TEXT });
  let r = await ask(server.base, { message: QUESTION });
  checkStream(r);
  assert.equal(answerText(r), A_TEXT, 'A answers again after the fault');
  await fakeA.configure({ reset: true, status: 400 });
  r = await ask(server.base, { message: QUESTION });
  checkStream(r);
  assert.equal(answerText(r), B_TEXT, 'B answers again after the fault');
  await fakeA.configure({ reset: true, text: A_TEXT });
}

function measure(server) {
  return { fds: fdList(server.child.pid), rss: rssBytes(server.child.pid) };
}

// Compares the server's fds and RSS with base after a settle.
async function checkBaseline(server, base, what) {
  const pid = server.child.pid;
  let fds = fdList(pid);
  const deadline = Date.now() + FD_SETTLE_MS;
  while (fds.length !== base.fds.length && Date.now() < deadline) {
    await sleep(50);
    fds = fdList(pid);
  }
  if (process.env.FAULTS_VERBOSE) console.log(`${what}: settled in ${FD_SETTLE_MS - (deadline - Date.now())} ms, fds ${fds.length}/${base.fds.length}, rss ${(rssBytes(pid) / MIB).toFixed(1)}/${(base.rss / MIB).toFixed(1)} MiB`);
  const extra = fds.filter((f) => !base.fds.includes(f));
  const gone = base.fds.filter((f) => !fds.includes(f));
  assert.equal(fds.length, base.fds.length,
    `${what}: open fds ${fds.length}, baseline ${base.fds.length}; new: ${extra.join(', ')}; gone: ${gone.join(', ')}`);
  const rss = rssBytes(pid);
  const tolerance = sanitized(pid) ? 64 * MIB : 8 * MIB;
  assert.ok(rss - base.rss <= tolerance,
    `${what}: VmRSS ${(rss / MIB).toFixed(1)} MiB, baseline ${(base.rss / MIB).toFixed(1)} MiB, tolerance ${tolerance / MIB} MiB`);
}

async function ingestedDataDir() {
  const dir = tempDir();
  const kb = path.join(SOURCE_DIR, 'examples', 'kb');
  const r = await runRagd(['ingest', '--data', dir, path.join(kb, 'en'), path.join(kb, 'ko')]);
  if (r.code !== 0) throw new Error(`ingest failed: ${r.stderr}`);
  return dir;
}

before(async () => {
  fakeA = await startFakeOpenAI(['--text', A_TEXT]);
  fakeB = await startFakeOpenAI(['--text', B_TEXT]);
  dataDir = await ingestedDataDir();
  srv = await startServer({ data: dataDir, env: chainEnv(fakeA.url, fakeB.url) });
  // Warm-up: the first answers allocate what stays (the store's statements,
  // the worker threads' stacks, curl's connection cache).
  for (let i = 0; i < 3; i++) await recover();
  await sleep(200);
  baseline = measure(srv);
});

after(async () => {
  if (srv) await srv.stop();
  if (fakeA) await fakeA.stop();
  if (fakeB) await fakeB.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// A fake's log once every request in it has ended one way or the other: the
// client's stream can end a moment before the fake sees ragd close the
// upstream connection.
async function settledLog(fake) {
  let log = await fake.log();
  for (let i = 0; i < 40 && !log.every((x) => x.finished || x.client_aborted); i++) {
    await sleep(50);
    log = await fake.log();
  }
  return log;
}

// Runs one fault: configures A (and B), asks once, hands the response and
// both fakes' logs to check, then recovers and compares with the baseline.
async function fault(what, { a, b, message = QUESTION }, check) {
  await fakeA.configure({ reset: true, text: A_TEXT, ...a });
  await fakeB.configure({ reset: true, text: B_TEXT, ...b });
  await clearLogs();
  const r = await ask(srv.base, { message });
  checkStream(r);
  await check(r, await settledLog(fakeA), await settledLog(fakeB));
  await recover();
  await checkBaseline(srv, baseline, what);
}

// ---- before the first token: retried, then failed over ----------------------

test('429 with Retry-After: 1 is retried after a second; A answers', async () => {
  await fault('429', { a: { fail_first: 1, fail_status: 429, retry_after: '1' } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'text_delta+', 'usage', 'done']);
    assert.equal(r.events[0].json.model, 'model-a');
    assert.equal(answerText(r), A_TEXT);
    assert.equal(logA.length, 2, 'one 429, one retry');
    assert.equal(logB.length, 0);
    // The backoff is at most 50 ms here: only Retry-After explains a second.
    assert.ok(r.elapsed >= 1000, `answered after ${r.elapsed} ms, before Retry-After`);
    if (process.env.FAULTS_VERBOSE) console.log(`429 answered in ${r.elapsed} ms`);
  });
});

test('503 twice, then success: two retries, A answers, no notice', async () => {
  await fault('503', { a: { fail_first: 2, fail_status: 503 } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'text_delta+', 'usage', 'done']);
    assert.equal(answerText(r), A_TEXT);
    assert.equal(logA.length, 3);
    assert.equal(logB.length, 0);
  });
});

test('500 every time: three attempts on A, then B answers after a notice', async () => {
  await fault('500', { a: { status: 500 } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'notice', 'text_delta+', 'usage', 'done']);
    assert.equal(r.events[0].json.model, 'model-a');
    const [n] = notices(r);
    assert.equal(n.provider, 'openai');
    assert.equal(n.model, 'model-b');
    assert.equal(n.degraded, false);
    assert.equal(n.reason, 'upstream_unavailable');
    assert.equal(answerText(r), B_TEXT);
    assert.equal(logA.length, 3, '1 attempt + RAGD_LLM_RETRIES=2');
    assert.equal(logB.length, 1);
  });
});

test('accept-then-hang: the first-token timeout ends the attempt, not retried; B answers', async () => {
  await fault('accept-hang', { a: { mode: 'accept-hang' } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'notice', 'text_delta+', 'usage', 'done']);
    assert.equal(notices(r)[0].reason, 'upstream_timeout');
    assert.equal(notices(r)[0].model, 'model-b');
    assert.equal(answerText(r), B_TEXT);
    assert.equal(logA.length, 1, 'a timeout is not retried');
    // Silence ends it: the idle timeout (1 s) or the first-token one (2.5 s).
    assert.ok(r.elapsed >= 1000 && r.elapsed < 4000, `resolved after ${r.elapsed} ms`);
    assert.equal(logB.length, 1);
  });
  // ragd hung up on A's stuck request.
  assert.ok((await fakeA.log()).every((e) => e.closed !== false));
});

test('garbage bytes before any text: upstream_protocol, not retried; B answers', async () => {
  await fault('garbage', { a: { mode: 'garbage' } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'notice', 'text_delta+', 'usage', 'done']);
    assert.equal(notices(r)[0].reason, 'upstream_protocol');
    assert.equal(answerText(r), B_TEXT);
    assert.equal(logA.length, 1);
    assert.equal(logB.length, 1);
  });
});

test('a 10 MiB line: cut at the 1 MiB line cap, upstream_protocol; B answers; memory returns', async () => {
  await fault('big-line', { a: { mode: 'big-line:10485760' } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'notice', 'text_delta+', 'usage', 'done']);
    assert.equal(notices(r)[0].reason, 'upstream_protocol');
    assert.equal(answerText(r), B_TEXT);
    assert.equal(logA.length, 1);
    assert.equal(logB.length, 1);
  });
});

// ---- after the first token: an error event, never a silent stop -------------

test('hang after 2 tokens: the idle timeout ends the stream with upstream_timeout', async () => {
  // Event 1 is the role chunk; events 2 and 3 carry the first two tokens.
  await fault('hang-after', { a: { mode: 'hang-after:3' } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'text_delta+', 'error']);
    assert.equal(answerText(r), ' Refunds are');
    assert.equal(r.events.at(-1).json.error.code, 'upstream_timeout');
    assert.ok(r.elapsed >= 1000 && r.elapsed < 4000, `resolved after ${r.elapsed} ms`);
    assert.equal(logA.length, 1, 'a half-sent answer is never restarted');
    assert.equal(logA[0].client_aborted, true, 'ragd closed the stalled upstream request');
    assert.equal(logB.length, 0, 'no failover after partial output (policy "error")');
  });
});

test('close after 2 tokens: upstream_closed', async () => {
  await fault('close-after', { a: { mode: 'close-after:3' } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'text_delta+', 'error']);
    assert.equal(answerText(r), ' Refunds are');
    assert.equal(r.events.at(-1).json.error.code, 'upstream_closed');
    assert.equal(logA.length, 1);
    assert.equal(logB.length, 0);
  });
});

test('connection reset after the first tokens: upstream_closed', async () => {
  // The pause between events lets the first tokens leave before the reset
  // (a destroyed socket drops what node had not flushed yet).
  await fault('reset-after', { a: { mode: 'reset-after:3', delay_ms: 30 } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'text_delta+', 'error']);
    assert.ok(answerText(r).length > 0 && A_TEXT.startsWith(answerText(r)), answerText(r));
    assert.equal(r.events.at(-1).json.error.code, 'upstream_closed');
    assert.equal(logA.length, 1);
    assert.equal(logB.length, 0);
  });
});

test('a very slow drip (a byte every 2 ms after the first token): never idle, cut by the 4 s total timeout', async () => {
  // The role chunk and the first token come whole (a per-byte drip of them
  // would race the first-token timeout on a loaded machine); the rest would
  // take 20 s.
  await fault('drip', { a: { drip_ms: 2, drip_from: 2, text: DRIP_TEXT } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'text_delta+', 'error']);
    const got = answerText(r);
    assert.ok(got.length > 0 && DRIP_TEXT.startsWith(got) && got !== DRIP_TEXT, `partial text: ${got}`);
    assert.equal(r.events.at(-1).json.error.code, 'upstream_timeout');
    assert.ok(r.elapsed >= 3500 && r.elapsed < 6000, `resolved after ${r.elapsed} ms`);
    assert.equal(logA.length, 1);
    assert.equal(logA[0].client_aborted, true);
    assert.equal(logB.length, 0);
  });
});

// ---- waiting answers hold no thread --------------------------------------------

test('non-streaming answers stuck on a hung provider hold no worker: a stream starts meanwhile', async () => {
  // More stuck requests than ragd has workers (RAGD_WORKERS, default 4).
  // Each waits for A's idle timeout (1 s), then B answers it.
  await fakeA.configure({ reset: true, text: A_TEXT, mode: 'accept-hang' });
  await fakeB.configure({ reset: true, text: B_TEXT });
  await clearLogs();
  const stuck = Array.from({ length: 8 }, () => ask(srv.base, { message: QUESTION, stream: false }));
  await sleep(150);
  const stream = await ask(srv.base, { message: QUESTION });
  const answers = await Promise.all(stuck);
  for (const a of answers) {
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.answer, B_TEXT);
    assert.equal(a.json.model, 'model-b');
  }
  checkStream(stream);
  const firstJson = Math.min(...answers.map((a) => a.endAt));
  assert.ok(stream.firstAt < firstJson,
    `the stream began ${stream.firstAt - firstJson} ms after the first stuck answer ended: it waited for a worker`);
  assert.equal((await fakeA.log()).length, 9);
  await recover();
  await checkBaseline(srv, baseline, 'stuck non-streaming');
});

// ---- every provider fails -----------------------------------------------------

test('both providers fail: the extractive last resort answers with citations', async () => {
  await fault('all-fail', { a: { status: 500 }, b: { status: 503 } }, (r, logA, logB) => {
    assert.deepEqual(names(r), ['meta', 'sources', 'notice', 'notice', 'text_delta+', 'usage', 'done']);
    const [toB, toExtractive] = notices(r);
    assert.equal(toB.model, 'model-b');
    assert.equal(toB.degraded, false);
    assert.equal(toExtractive.provider, 'extractive');
    assert.equal(toExtractive.degraded, true);
    assert.equal(toExtractive.reason, 'upstream_unavailable');
    assert.equal(logA.length, 3);
    assert.equal(logB.length, 3);
    const sources = r.events[1].json.sources;
    const cited = [...answerText(r).matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]));
    assert.ok(cited.length >= 1, `the fallback answer cites: ${answerText(r)}`);
    for (const n of cited) assert.ok(n >= 1 && n <= sources.length, `citation [${n}] of ${sources.length} sources`);
    const done = r.events.at(-1).json;
    assert.ok(done.cited_sources.length >= 1);
    assert.deepEqual(done.invalid_citations, []);
  });
});

// ---- breakers: a probe that answers closes the breaker at its first token ------

test('a half-open probe that starts answering closes the breaker at once, not at its end', async (t) => {
  const brk = await startServer({
    data: dataDir,
    env: {
      ...chainEnv(fakeA.url, fakeB.url),
      RAGD_LLM_RETRIES: '0',
      RAGD_LLM_BREAKER_MIN_REQUESTS: '2',
      RAGD_LLM_BREAKER_COOLDOWN_MS: '300',
    },
  });
  t.after(() => brk.stop());
  const primary = async () => (await (await fetch(brk.base + '/readyz')).json())
    .breakers.find((b) => b.name === 'PRIMARY');
  await fakeA.configure({ reset: true, status: 500 });
  await fakeB.configure({ reset: true, text: B_TEXT });
  for (let i = 0; i < 2; i++) assert.equal(notices(await ask(brk.base, { message: QUESTION }))[0]?.model, 'model-b');
  assert.equal((await primary()).state, 'open');
  await sleep(400); // the cool-down is over: the next request is the probe

  // A is healthy again but slow: its answer takes about 2.4 s.
  const slow = Array.from({ length: 12 }, (_, i) => ` w${i}`).join('');
  await fakeA.configure({ reset: true, text: slow, delay_ms: 200 });
  const probe = ask(brk.base, { message: QUESTION });
  let state;
  const deadline = Date.now() + 1500;
  do {
    await sleep(50);
    state = (await primary()).state;
  } while (state !== 'closed' && Date.now() < deadline);
  assert.equal(state, 'closed', 'the breaker closed while the probe was still answering');
  // A second question now goes to A too, instead of failing over.
  const second = await ask(brk.base, { message: QUESTION });
  checkStream(second);
  assert.deepEqual(names(second), ['meta', 'sources', 'text_delta+', 'usage', 'done']);
  assert.equal(answerText(second), slow);
  const first = await probe;
  checkStream(first);
  assert.deepEqual(names(first), ['meta', 'sources', 'text_delta+', 'usage', 'done']);
  assert.equal(answerText(first), slow);
  assert.equal((await primary()).state, 'closed');
});

// ---- connection refused: a primary on a closed port ------------------------------

async function closedPort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

test('connection refused (a closed port): retried twice, then B answers', async (t) => {
  const port = await closedPort();
  const refused = await startServer({
    data: dataDir,
    env: { ...chainEnv(`http://127.0.0.1:${port}/v1`, fakeB.url), RAGD_LOG_LEVEL: 'debug' },
  });
  t.after(() => refused.stop());
  await fakeB.configure({ reset: true, text: B_TEXT });
  // Warm-up and baseline for this server: B answers, leaving its connection.
  for (let i = 0; i < 2; i++) checkStream(await ask(refused.base, { message: QUESTION }));
  await sleep(200);
  const base = measure(refused);
  await clearLogs();
  const before = (refused.stderr().match(/attempt \d+ failed \(connect error/g) || []).length;
  const r = await ask(refused.base, { message: QUESTION });
  checkStream(r);
  assert.deepEqual(names(r), ['meta', 'sources', 'notice', 'text_delta+', 'usage', 'done']);
  assert.equal(r.events[0].json.model, 'model-a');
  assert.equal(notices(r)[0].model, 'model-b');
  assert.equal(notices(r)[0].reason, 'upstream_unavailable');
  assert.equal(answerText(r), B_TEXT);
  assert.equal((await fakeB.log()).length, 1);
  // Nothing listens on the port, so ragd's own debug log counts the retries.
  const retries = (refused.stderr().match(/attempt \d+ failed \(connect error/g) || []).length - before;
  assert.equal(retries, 2, refused.stderr());
  checkStream(await ask(refused.base, { message: QUESTION }));
  await checkBaseline(refused, base, 'refused');
});
