// Shared helpers for the integration tests: start the real ragd binary on a
// free loopback port with a temporary data folder, talk HTTP to it, parse its
// Server-Sent Events, and run the fake OpenAI upstream.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

export const RAGD_BIN = process.env.RAGD_BIN;
export const SOURCE_DIR = process.env.RAGD_SOURCE_DIR;
if (!RAGD_BIN || !SOURCE_DIR) throw new Error('run through ctest: RAGD_BIN and RAGD_SOURCE_DIR must be set');

// The environment ragd sees: the test's own RAGD_* variables removed (ragd
// refuses unknown ones), plus what the test asks for.
export function ragdEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RAGD_')) env[k] = v;
  return { ...env, RAGD_LOG_LEVEL: 'warn', ...extra };
}

export function tempDir(prefix = 'ragd-test-') {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

// Runs a ragd command to completion; resolves {code, stdout, stderr}.
export function runRagd(args, { env = {}, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(RAGD_BIN, args, { env: ragdEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

// Waits until a child process prints a line matching re on stdout and
// resolves the first capture group as a number (a port). Collects stderr into
// the returned getter for error messages.
export function waitForPort(child, re, what, timeoutMs = 20000) {
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const lines = createInterface({ input: child.stdout });
  const port = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${stderr}`)), timeoutMs);
    child.on('exit', (code) => reject(new Error(`${what} exited with ${code}: ${stderr}`)));
    lines.on('line', (line) => {
      const m = re.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  return { port, stderr: () => stderr };
}

// Starts `ragd serve` on 127.0.0.1:0 and waits for its READY line.
export async function startServer({ env = {}, data } = {}) {
  const dataDir = data ?? tempDir();
  const child = spawn(RAGD_BIN, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir], {
    env: ragdEnv(env),
  });
  const waiting = waitForPort(child, /^READY (\d+)$/, 'ragd');
  const port = await waiting.port;
  const stderrOf = waiting.stderr;
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    port,
    dataDir,
    child,
    stderr: stderrOf,
    async stop({ keepData = false } = {}) {
      let stderr;
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      if (!keepData && !data) rmSync(dataDir, { recursive: true, force: true });
      stderr = stderrOf();
      // A clean stop: exit status 0 and no sanitizer report (leaks included).
      if (child.exitCode !== 0 || /Sanitizer|runtime error:/.test(stderr))
        throw new Error(`ragd did not stop cleanly (exit ${child.exitCode}, signal ${child.signalCode}):\n${stderr}`);
      return child.exitCode;
    },
  };
}

export async function postJson(base, route, body, headers = {}) {
  const res = await fetch(base + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

// A strict parser of the WHATWG event-stream format, fed decoded text.
export function parseSse(text) {
  const events = [];
  const comments = [];
  let retry;
  let ev = { event: '', data: [], id: undefined };
  const lines = text.split(/\r\n|\r|\n/);
  // A stream that ends without a blank line leaves a partial event: dropped.
  lines.pop();
  for (const line of lines) {
    if (line === '') {
      if (ev.data.length) events.push({ event: ev.event || 'message', id: ev.id, data: ev.data.join('\n') });
      ev = { event: '', data: [], id: undefined };
      continue;
    }
    if (line.startsWith(':')) {
      comments.push(line.slice(1).trim());
      continue;
    }
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') ev.event = value;
    else if (field === 'data') ev.data.push(value);
    else if (field === 'id') ev.id = value;
    else if (field === 'retry') retry = Number(value);
  }
  return { events, comments, retry };
}

// POSTs to /v1/chat and reads the whole event stream.
export async function chatStream(base, body, headers = {}) {
  const res = await fetch(base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const raw = Buffer.from(await res.arrayBuffer());
  const text = raw.toString('utf8');
  return { status: res.status, headers: res.headers, raw, text, ...parseSse(text) };
}

// fetch for the fakes' /__admin routes (idempotent: set a config, read or
// clear the log). A keep-alive socket the fake closed as idle can fail the
// first write (EPIPE, ECONNRESET) on a loaded machine, when undici's idle
// timer fires late; such a request never reached the fake, so it is sent once
// more on a fresh connection.
async function adminFetch(url, init) {
  try {
    return await fetch(url, init);
  } catch (err) {
    const code = err && err.cause && err.cause.code;
    if (!['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(code)) throw err;
    return fetch(url, init);
  }
}

// Starts the fake OpenAI-compatible upstream under tests/fakes.
export async function startFakeOpenAI(args = []) {
  const script = path.join(SOURCE_DIR, 'tests', 'fakes', 'fake_openai.mjs');
  const child = spawn(process.execPath, [script, '--port', '0', ...args]);
  const port = await waitForPort(child, /^LISTENING (\d+)$/, 'fake upstream', 10000).port;
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    url: `${base}/v1`,
    async configure(cfg) {
      const r = await adminFetch(base + '/__admin/config', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(cfg),
      });
      if (!r.ok) throw new Error(`fake config failed: ${r.status}`);
    },
    async log() {
      return (await adminFetch(base + '/__admin/log')).json();
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Ingests the bundled sample knowledge base over HTTP, one request per file.
import { readdirSync, readFileSync } from 'node:fs';
export async function ingestSampleKb(base) {
  const ids = [];
  for (const lang of ['en', 'ko']) {
    const dir = path.join(SOURCE_DIR, 'examples', 'kb', lang);
    for (const name of readdirSync(dir).sort()) {
      if (!name.endsWith('.md')) continue;
      const id = `${lang}/${name}`;
      const r = await postJson(base, '/v1/documents', {
        id,
        text: readFileSync(path.join(dir, name), 'utf8'),
        format: 'markdown',
        url: `https://help.hanbit-market.example/${id.replace(/\.md$/, '')}`,
      });
      if (r.status !== 200) throw new Error(`ingest ${id}: ${r.status} ${r.text}`);
      ids.push(id);
    }
  }
  return ids;
}

// Starts the fake OpenAI-compatible /v1/embeddings server under tests/fakes.
export async function startFakeEmbeddings(args = []) {
  const script = path.join(SOURCE_DIR, 'tests', 'fakes', 'fake_embeddings.mjs');
  const child = spawn(process.execPath, [script, '--port', '0', ...args]);
  const port = await waitForPort(child, /^LISTENING (\d+)$/, 'fake embeddings', 10000).port;
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    url: `${base}/v1`,
    async configure(cfg) {
      const r = await adminFetch(base + '/__admin/config', { method: 'POST', body: JSON.stringify(cfg) });
      if (!r.ok) throw new Error(`fake embeddings config failed: ${r.status}`);
    },
    async log() {
      return (await adminFetch(base + '/__admin/log')).json();
    },
    async clearLog() {
      await adminFetch(base + '/__admin/log', { method: 'DELETE' });
    },
    // every input text the fake was asked to embed
    async inputs() {
      return (await this.log()).flatMap((x) => [].concat(x.body.input));
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}
