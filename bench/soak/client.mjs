#!/usr/bin/env node
// client.mjs - the traffic half of the soak (bench/soak/soak.sh starts it).
//
//   node bench/soak/client.mjs --base http://127.0.0.1:PORT --concurrency N
//        --duration-s S [--fault-pct 5] [--disconnect-pct 5] [--seed 1]
//        [--request-timeout-s 90] [--report PATH]
//
// Loopback only: --base must name 127.0.0.0/8 or [::1]. Runs N request loops
// for S seconds, then waits for the requests in flight (each bounded by
// --request-timeout-s) and exits by itself.
//
// Each request is one of (mixed traffic):
//   60% POST /v1/chat (native SSE)        15% POST /v1/chat/completions (stream)
//   10% POST /v1/chat  "stream": false    10% POST /v1/chat/completions (JSON)
//    5% POST /v1/search
// fault-pct of the answer requests carry a `FAKE:` line that makes the
// primary fake upstream misbehave (one kind, chosen uniformly from FAULTS);
// disconnect-pct of the streaming ones are dropped by the client after a
// random number of events or milliseconds.
//
// Every request ends in exactly one outcome kind, counted in the report:
//   ok              a terminal done / [DONE] / 200 JSON, no failover seen (the
//                   OpenAI format carries no notice, so there any answer is ok)
//   failover        ... answered by the backup after a notice
//   degraded        ... answered by the extractive last resort
//   error:<code>    a terminal error event (or error chunk / problem+json)
//   http:<status>   a non-200 answer to a stream request
//   disconnected    the client hung up on purpose
//   truncated       the stream ended without a terminal event  (a bug)
//   timeout         no end within --request-timeout-s          (a bug)
//   net:<code>      a transport error (ECONNRESET, ...)
// Prints a progress line every 10 s on stderr and the JSON report on stdout
// (and into --report).
import http from 'node:http';
import { writeFileSync } from 'node:fs';

const opts = {
  base: '', concurrency: 1000, duration_s: 1800, fault_pct: 5, disconnect_pct: 5,
  seed: 1, request_timeout_s: 90, report: '',
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = argv[i].replace(/^--/, '').replace(/-/g, '_');
  if (!(key in opts)) {
    process.stderr.write(`client.mjs: unknown option ${argv[i]}\n`);
    process.exit(2);
  }
  opts[key] = typeof opts[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
}
const baseUrl = new URL(opts.base);
if (!/^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(baseUrl.hostname)) {
  process.stderr.write(`client.mjs: ${opts.base} is not a loopback address\n`);
  process.exit(2);
}

// One kind of upstream fault each; big-line uses 2 MiB (still twice ragd's
// 1 MiB line cap) so that the fake can afford it at soak rates.
const FAULTS = [
  { status: 429, retry_after: '1' },
  { status: 500 },
  { status: 503 },
  { mode: 'accept-hang' },
  { mode: 'hang-after:3' },
  { mode: 'close-after:3' },
  { mode: 'reset-after:3', delay_ms: 20 },
  { mode: 'garbage' },
  { mode: 'big-line:2097152' },
  { drip_ms: 20 },
];

const QUESTIONS = [
  'How long do refunds take?',
  'How do I reset my password?',
  'Can I change my delivery address after ordering?',
  'What payment methods do you accept?',
  '비밀번호를 잊어버렸어요. 어떻게 재설정하나요?',
  '환불은 얼마나 걸리나요?',
  '배송지를 변경할 수 있나요?',
  'How do I cancel an order?',
];

let rng = opts.seed >>> 0 || 1;
function random() {
  rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
  return rng / 0x100000000;
}
const pick = (a) => a[Math.floor(random() * a.length)];

const counts = {};
const faultsSent = {};
let started = 0;
let finished = 0;
const latencies = []; // ms to the end of successful answers (sampled)
const count = (kind) => { counts[kind] = (counts[kind] || 0) + 1; };

// Classifies a native SSE body; returns the outcome kind.
function classifySse(text) {
  let terminal = null;
  let notice = null;
  for (const block of text.split('\n\n')) {
    const ev = /^event: (.*)$/m.exec(block);
    const data = /^data: (.*)$/m.exec(block);
    if (!ev || !data) continue;
    if (ev[1] === 'notice') notice = JSON.parse(data[1]);
    if (ev[1] === 'done' || ev[1] === 'error') {
      if (terminal) return 'duplicate-terminal';
      terminal = JSON.parse(data[1]);
    }
  }
  if (!terminal) return 'truncated';
  if (terminal.type === 'error') return `error:${terminal.error.code}`;
  if (notice) return notice.degraded ? 'degraded' : 'failover';
  return 'ok';
}

// Classifies an OpenAI-format stream: chunks, an error chunk, [DONE].
function classifyOpenAiStream(text) {
  const lines = text.split('\n').filter((l) => l.startsWith('data: '));
  if (lines.at(-1) !== 'data: [DONE]') return 'truncated';
  for (const l of lines.slice(0, -1)) {
    const o = JSON.parse(l.slice(6));
    if (o.error) return `error:${o.error.code}`;
  }
  return 'ok';
}

function classifyJson(route, status, text) {
  let o;
  try { o = JSON.parse(text); } catch { return 'truncated'; }
  if (status !== 200) return `error:${o.code || (o.error && o.error.code) || status}`;
  if (route === 'search') return Array.isArray(o.results) ? 'ok' : 'truncated';
  if (o.degraded) return 'degraded';
  return 'ok';
}

function oneRequest() {
  const roll = random();
  const question = pick(QUESTIONS);
  let route;
  let body;
  let kind; // sse | openai-stream | json
  if (roll < 0.05) {
    route = 'search'; kind = 'json';
    body = { query: question, top_k: 5 };
  } else {
    const fault = random() * 100 < opts.fault_pct ? pick(FAULTS) : null;
    const message = fault ? `${question}\nFAKE: ${JSON.stringify(fault)}` : question;
    if (fault) faultsSent[JSON.stringify(fault)] = (faultsSent[JSON.stringify(fault)] || 0) + 1;
    if (roll < 0.65) { route = 'chat'; kind = 'sse'; body = { message }; }
    else if (roll < 0.75) { route = 'chat'; kind = 'json'; body = { message, stream: false }; }
    else if (roll < 0.90) {
      route = 'chat/completions'; kind = 'openai-stream';
      body = { model: 'ragd', stream: true, messages: [{ role: 'user', content: message }] };
    } else {
      route = 'chat/completions'; kind = 'json';
      body = { model: 'ragd', messages: [{ role: 'user', content: message }] };
    }
  }
  const disconnect = kind !== 'json' && random() * 100 < opts.disconnect_pct
    ? (random() < 0.5 ? { afterEvents: 1 + Math.floor(random() * 8) } : { afterMs: Math.floor(random() * 2000) })
    : null;
  const t0 = Date.now();
  started++;
  return new Promise((resolve) => {
    let done = false;
    const end = (outcome) => {
      if (done) return;
      done = true;
      finished++;
      count(outcome);
      if (outcome === 'ok' && latencies.length < 200000) latencies.push(Date.now() - t0);
      clearTimeout(timer);
      resolve();
    };
    const req = http.request(`${opts.base}/v1/${route}`, {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', connection: 'close' },
    }, (res) => {
      const parts = [];
      let events = 0;
      res.on('data', (c) => {
        parts.push(c);
        if (disconnect && disconnect.afterEvents !== undefined) {
          events += c.toString('utf8').split('\n\n').length - 1;
          if (events >= disconnect.afterEvents) { req.destroy(); end('disconnected'); }
        }
      });
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        if (kind !== 'json' && res.statusCode !== 200) return end(`http:${res.statusCode}`);
        if (kind === 'sse') return end(classifySse(text));
        if (kind === 'openai-stream') return end(classifyOpenAiStream(text));
        return end(classifyJson(route === 'search' ? 'search' : 'chat', res.statusCode, text));
      });
      res.on('error', (e) => end(`net:${e.code || e.message}`));
      res.on('aborted', () => end('truncated'));
    });
    req.on('error', (e) => end(done ? 'ignored' : `net:${e.code || e.message}`));
    const timer = setTimeout(() => { req.destroy(); end('timeout'); }, opts.request_timeout_s * 1000);
    if (disconnect && disconnect.afterMs !== undefined)
      setTimeout(() => { if (!done) { req.destroy(); end('disconnected'); } }, disconnect.afterMs);
    req.end(JSON.stringify(body));
  });
}

const deadline = Date.now() + opts.duration_s * 1000;
async function loop() {
  while (Date.now() < deadline) await oneRequest();
}

const t0 = Date.now();
const progress = setInterval(() => {
  const s = Math.round((Date.now() - t0) / 1000);
  process.stderr.write(`soak client: ${s}s started ${started} finished ${finished} ${JSON.stringify(counts)}\n`);
}, 10000);

await Promise.all(Array.from({ length: opts.concurrency }, loop));
clearInterval(progress);
latencies.sort((a, b) => a - b);
const q = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null;
const report = {
  concurrency: opts.concurrency,
  duration_s: opts.duration_s,
  elapsed_s: Math.round((Date.now() - t0) / 100) / 10,
  requests: finished,
  requests_per_s: Math.round((finished / ((Date.now() - t0) / 1000)) * 10) / 10,
  outcomes: Object.fromEntries(Object.entries(counts).sort()),
  faults_injected: faultsSent,
  ok_latency_ms: { p50: q(0.5), p99: q(0.99), max: latencies.at(-1) ?? null },
};
const json = JSON.stringify(report, null, 2);
if (opts.report) writeFileSync(opts.report, json + '\n');
process.stdout.write(json + '\n');
