#!/usr/bin/env node
// fake_embeddings.mjs - a stand-in for OpenAI's Embeddings API
// (POST /v1/embeddings), for tests. node:http only, no npm dependencies.
//
//   node tests/fakes/fake_embeddings.mjs --port 0 [--dimensions N] [--api-key K]
//        [--exit-on-stdin-eof 1]
// Prints `LISTENING <port>` on stdout once bound.
//
// Wire format as OpenAI documents it. Request: {"model", "input": string or
// array of strings, "encoding_format": "float" (default) | "base64",
// "dimensions"?}. Response: {"object": "list", "data": [{"object":
// "embedding", "index": i, "embedding": [floats]}], "model", "usage":
// {"prompt_tokens", "total_tokens"}}. Errors are {"error": {"message", "type",
// "param", "code"}} with the status OpenAI uses (400 invalid_request_error,
// 401 invalid_api_key, 429 rate_limit_exceeded with Retry-After, 500
// server_error).
//
// The vectors: every word (lower-cased letters/digits, Hangul syllable runs
// as bigrams) adds +1 or -1 to a slot chosen by a hash, then the vector is
// scaled to unit length. A few synonym groups share one slot set, so that
// "package" finds "parcel" (the semantic match BM25 cannot make).
//
// Run-time control:
//   POST /__admin/config   merges JSON into the config; {"reset": true}
//                          restores the start-up values first. Keys:
//                          dimensions, api_key, delay_ms, and "fail": a list
//                          of failures for the next requests, each
//                          {"status": 429, "retry_after": 1} or {"status":
//                          500} or {"status": 400, "message": "..."}.
//   GET  /__admin/log      one record per API request: method, url, headers,
//                          body (parsed JSON), status, inputs (count), t
//                          (arrival, ms since the epoch).
//   DELETE /__admin/log    clears it.

import http from 'node:http';

function parseArgs(argv) {
  const cfg = { port: 0, dimensions: 64, api_key: '', delay_ms: 0, exit_on_stdin_eof: 0 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-/g, '_');
    if (!(key in cfg)) {
      process.stderr.write(`fake_embeddings: unknown option ${argv[i]}\n`);
      process.exit(2);
    }
    cfg[key] = typeof cfg[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  return cfg;
}

const startup = parseArgs(process.argv.slice(2));
let config = { ...startup, fail: [] };
let log = [];

const SYNONYMS = [
  ['parcel', 'package', 'packages', 'parcels', 'shipment', 'delivery'],
  ['refund', 'refunds', 'money', 'reimbursement', 'repayment'],
  ['password', 'passcode', 'login', 'credentials'],
  ['택배', '소포', '배송'],
];
const canonical = new Map();
for (const group of SYNONYMS) for (const w of group) canonical.set(w, group[0]);

function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function words(text) {
  const out = [];
  for (const m of text.toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) {
    const w = m[0];
    if (/^[\uac00-\ud7a3]+$/.test(w) && w.length > 2) {
      for (let i = 0; i + 2 <= w.length; i++) out.push(w.slice(i, i + 2));
    } else {
      out.push(w);
    }
  }
  return out;
}

function embed(text, dims) {
  const v = new Array(dims).fill(0);
  for (const w of words(text)) {
    const h = fnv1a(canonical.get(w) ?? w);
    v[h % dims] += h & 0x80000000 ? -1 : 1;
  }
  const n = Math.hypot(...v);
  return n ? v.map((x) => x / n) : v;
}

function sendError(res, status, type, code, message, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ error: { message, type, param: null, code } }));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function handleEmbeddings(req, res, raw) {
  let body;
  const record = { method: req.method, url: req.url, headers: req.headers, body: raw, status: 0, inputs: 0, t: Date.now() };
  log.push(record);
  try {
    body = JSON.parse(raw);
    record.body = body;
  } catch {
    record.status = 400;
    return sendError(res, 400, 'invalid_request_error', null, 'We could not parse the JSON body of your request.');
  }
  if (config.api_key && req.headers.authorization !== `Bearer ${config.api_key}`) {
    record.status = 401;
    return sendError(res, 401, 'invalid_request_error', 'invalid_api_key', 'Incorrect API key provided.');
  }
  if (config.fail.length) {
    const f = config.fail.shift();
    record.status = f.status;
    if (f.status === 429)
      return sendError(res, 429, 'requests', 'rate_limit_exceeded', 'Rate limit reached for requests.',
        f.retry_after !== undefined ? { 'retry-after': String(f.retry_after) } : {});
    if (f.status >= 500)
      return sendError(res, f.status, 'server_error', null, 'The server had an error while processing your request.');
    return sendError(res, f.status, 'invalid_request_error', null, f.message ?? 'Invalid request.');
  }
  const input = typeof body.input === 'string' ? [body.input] : body.input;
  if (!Array.isArray(input) || input.length === 0 || input.some((s) => typeof s !== 'string' || s === '')) {
    record.status = 400;
    return sendError(res, 400, 'invalid_request_error', null, "'input' must be a non-empty string or array of non-empty strings.");
  }
  if (input.length > 2048) {
    record.status = 400;
    return sendError(res, 400, 'invalid_request_error', null, "'input' must have at most 2048 items.");
  }
  if (typeof body.model !== 'string' || !body.model) {
    record.status = 400;
    return sendError(res, 400, 'invalid_request_error', null, 'you must provide a model parameter');
  }
  const dims = Number.isInteger(body.dimensions) ? body.dimensions : config.dimensions;
  record.inputs = input.length;
  if (config.delay_ms) await sleep(config.delay_ms);
  let tokens = 0;
  const data = input.map((text, index) => {
    tokens += words(text).length;
    return { object: 'embedding', index, embedding: embed(text, dims) };
  });
  record.status = 200;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }));
}

const server = http.createServer(async (req, res) => {
  const raw = await readBody(req);
  if (req.url === '/__admin/config' && req.method === 'POST') {
    const patch = JSON.parse(raw || '{}');
    if (patch.reset) config = { ...startup, fail: [] };
    delete patch.reset;
    config = { ...config, ...patch };
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(config));
  }
  if (req.url === '/__admin/log') {
    if (req.method === 'DELETE') log = [];
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(req.method === 'DELETE' ? [] : log));
  }
  if (req.url === '/v1/embeddings' && req.method === 'POST') return handleEmbeddings(req, res, raw);
  sendError(res, 404, 'invalid_request_error', null, `Unknown request URL: ${req.method} ${req.url}.`);
});

server.listen(startup.port, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
if (startup.exit_on_stdin_eof) process.stdin.on('end', () => process.exit(0)).resume();
process.on('SIGTERM', () => server.close(() => process.exit(0)));
