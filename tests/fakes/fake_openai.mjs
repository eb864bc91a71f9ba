#!/usr/bin/env node
// fake_openai.mjs - a stand-in for OpenAI's Chat Completions API, for tests.
//
// No npm dependencies (node:http only). Speaks the streaming format as OpenAI
// documents it: `data: <chat.completion.chunk JSON>\n\n` events (a role-only
// first chunk, content chunks, a final chunk with an empty delta and
// finish_reason, a usage chunk with "choices": [] when the request asked for
// stream_options.include_usage) and `data: [DONE]\n\n`. "stream": false gets a
// chat.completion object.
//
//   node tests/fakes/fake_openai.mjs --port 0 [--text S] [--split whole|bytes|random]
//        [--delay-ms N] [--status N] [--mode normal|hang-after:N|close-after:N|
//        reset-after:N|garbage|stream-error|accept-hang|big-line:N] [--seed N]
//        [--retry-after V] [--fail-first N] [--fail-status N] [--drip-ms N] [--drip-from N]
//        [--exit-on-stdin-eof 1] [--directives 0|1]
//
// --exit-on-stdin-eof 1 makes the fake exit when its stdin closes, so a test
// that gives it a pipe never leaves it running after a crash.
// Prints `LISTENING <port>` on stdout once bound.
//
// Behaviour (all of the above) can be changed at run time:
//   POST /__admin/config   JSON object merged into the config, e.g.
//                          {"split":"bytes","status":200}; {"reset":true}
//                          first restores the start-up defaults. Returns it.
//   GET  /__admin/log      JSON array, one record per API request: method,
//                          url, headers, body (parsed JSON or raw text),
//                          client_aborted (the client closed the connection
//                          before the response finished), finished.
//   DELETE /__admin/log    clears the log.
//   POST /__admin/close-idle  closes every idle keep-alive connection (a
//                          client's connection cache then holds dead ones).
// {"queue": [{...}, {...}]} in a config patch overrides the config for the next
// API requests, one entry each, in order (e.g. a rewrite, then an answer).
// A single request may also override the config: a line
// `FAKE: {"text":"...","mode":"..."}` in the last user message is merged in
// (unless --directives 0: a backup that must stay healthy while the same
// prompt makes the primary fail).
//
// Modes: hang-after:N sends N events then stalls forever; close-after:N ends
// the response cleanly after N events (no [DONE]); reset-after:N destroys the
// socket after N events; garbage sends a data line that is not JSON after the
// role chunk; stream-error sends {"error":{...}} as a data line.
// Events are numbered from 1 and include the role chunk.
// Fault modes for the resilience suite: accept-hang reads the request and
// never answers (not even a status line); big-line:N sends one data line of N
// bytes (default 10 MiB) after the role chunk; --drip-ms N writes the stream
// one byte at a time, N ms apart (from event --drip-from N on, counted from
// 0: 2 sends the role chunk and the first token whole). --retry-after V adds `Retry-After: V` to
// error responses (seconds or an HTTP date). --fail-first N answers the first
// N API requests after the last /__admin/config with --fail-status (default
// 503), then behaves normally: "fail, fail, succeed".
// --delay-ms waits between events; --split bytes writes one byte per write
// (with a short pause every few bytes so they leave as separate packets),
// random writes random-sized pieces.

import http from 'node:http';

const DEFAULT_TEXT =
  ' Refunds are issued within 3 business days [1].\n  Second line with "quotes", emoji 😀 and 한국어.';

function parseArgs(argv) {
  const cfg = {
    port: 0, text: DEFAULT_TEXT, split: 'whole', delay_ms: 0, status: 200,
    mode: 'normal', seed: 1, model: 'gpt-fake-1', exit_on_stdin_eof: 0,
    retry_after: '', fail_first: 0, fail_status: 503, drip_ms: 0, drip_from: 0, encoding: '', directives: 1,
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '').replace(/-/g, '_');
    const val = argv[i + 1];
    i++;
    if (!(key in cfg)) {
      process.stderr.write(`fake_openai: unknown option ${argv[i - 1]}\n`);
      process.exit(2);
    }
    cfg[key] = typeof cfg[key] === 'number' ? Number(val) : val;
  }
  return cfg;
}

const startup = parseArgs(process.argv.slice(2));
let config = { ...startup };
let log = [];
let servedSinceConfig = 0; // API requests since the last /__admin/config
let rngState = startup.seed >>> 0 || 1;

function random() {
  // xorshift32: reproducible splits for a given seed.
  rngState ^= rngState << 13; rngState >>>= 0;
  rngState ^= rngState >>> 17;
  rngState ^= rngState << 5; rngState >>>= 0;
  return rngState / 0x100000000;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, obj, extraHeaders = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extraHeaders });
  res.end(body);
}

function errorObject(status) {
  const table = {
    400: ['invalid_request_error', 'Invalid request.', null],
    401: ['invalid_request_error', 'Incorrect API key provided: sk-fake***. You can find your API key at https://platform.openai.com/account/api-keys.', 'invalid_api_key'],
    404: ['invalid_request_error', 'The model does not exist or you do not have access to it.', 'model_not_found'],
    429: ['requests', 'Rate limit reached for requests. Please try again in 1s.', 'rate_limit_exceeded'],
  };
  const [type, message, code] = table[status] || ['server_error', 'The server had an error while processing your request. Sorry about that!', null];
  return { error: { message, type, param: null, code } };
}

// Splits text into token-like pieces: a word with its leading spaces, or a run
// of spaces/newlines.
function tokenize(text) {
  return text.match(/\s*\S+|\s+/gu) || [];
}

function directiveOverride(body) {
  const msgs = body && Array.isArray(body.messages) ? body.messages : [];
  const lastUser = [...msgs].reverse().find((m) => m && m.role === 'user');
  if (!lastUser || typeof lastUser.content !== 'string') return {};
  const line = lastUser.content.split('\n').find((l) => l.startsWith('FAKE: '));
  if (!line) return {};
  try { return JSON.parse(line.slice(6)); } catch { return {}; }
}

// With --encoding cl100k_base|o200k_base, usage is counted the way OpenAI
// counts chat prompts (3 tokens per message + role + content, + 3 for the
// reply) with the npm gpt-tokenizer package; otherwise a word count.
const encoders = {};
async function exactUsage(cfg, body, text) {
  if (!cfg.encoding) return null;
  if (!encoders[cfg.encoding]) encoders[cfg.encoding] = await import(`gpt-tokenizer/encoding/${cfg.encoding}`);
  const { encode } = encoders[cfg.encoding];
  const msgs = Array.isArray(body.messages) ? body.messages : [];
  let prompt = 3;
  for (const m of msgs) prompt += 3 + encode(String(m.role)).length + encode(String(m.content)).length;
  return { prompt, completion: encode(text).length };
}

function countWords(body) {
  const msgs = body && Array.isArray(body.messages) ? body.messages : [];
  let n = 0;
  for (const m of msgs) if (m && typeof m.content === 'string') n += tokenize(m.content).length;
  return n + 3 * msgs.length;
}

async function writePiece(res, piece, cfg, rec, drip = true) {
  const data = Buffer.from(piece, 'utf8');
  if (drip && Number(cfg.drip_ms) > 0) {
    for (let i = 0; i < data.length; i++) {
      if (rec.closed) return;
      res.write(data.subarray(i, i + 1));
      await sleep(Number(cfg.drip_ms));
    }
  } else if (cfg.split === 'bytes') {
    for (let i = 0; i < data.length; i++) {
      if (rec.closed) return;
      res.write(data.subarray(i, i + 1));
      if (i % 8 === 7) await sleep(1);
    }
  } else if (cfg.split === 'random') {
    let i = 0;
    while (i < data.length) {
      if (rec.closed) return;
      const n = 1 + Math.floor(random() * 23);
      res.write(data.subarray(i, i + n));
      i += n;
      if (random() < 0.3) await sleep(1);
    }
  } else {
    res.write(data);
  }
}

async function streamCompletion(req, res, body, cfg, rec) {
  const id = 'chatcmpl-' + Math.random().toString(36).slice(2, 14);
  const created = Math.floor(Date.now() / 1000);
  const model = typeof body.model === 'string' ? body.model : cfg.model;
  const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_fake0001' };
  const chunk = (delta, finish, extra = {}) => 'data: ' + JSON.stringify({
    ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra,
  }) + '\n\n';
  const includeUsage = !!(body.stream_options && body.stream_options.include_usage);
  const usageNull = includeUsage ? { usage: null } : {};
  const tokens = tokenize(cfg.text);

  const events = [chunk({ role: 'assistant', content: '', refusal: null }, null, usageNull)];
  if (cfg.mode === 'garbage') events.push('data: {"id": this is not json at all\n\n');
  if (String(cfg.mode).startsWith('big-line')) {
    const n = Number(String(cfg.mode).split(':')[1] || 10 * 1024 * 1024);
    events.push('data: ' + 'x'.repeat(n) + '\n\n');
  }
  if (cfg.mode === 'stream-error') {
    events.push('data: ' + JSON.stringify({ error: { message: 'The model produced invalid content.', type: 'server_error', param: null, code: null } }) + '\n\n');
  }
  for (const t of tokens) events.push(chunk({ content: t }, null, usageNull));
  events.push(chunk({}, 'stop', usageNull));
  if (includeUsage) {
    const exact = await exactUsage(cfg, body, cfg.text);
    const completion = exact ? exact.completion : tokens.length;
    const prompt = exact ? exact.prompt : countWords(body);
    events.push('data: ' + JSON.stringify({
      ...base, choices: [],
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
    }) + '\n\n');
  }
  events.push('data: [DONE]\n\n');

  const [modeName, modeArg] = String(cfg.mode).split(':');
  const limit = modeArg !== undefined ? Number(modeArg) : Infinity;

  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-request-id': 'req_fake',
    'openai-processing-ms': '1',
  });
  res.flushHeaders();
  for (let i = 0; i < events.length; i++) {
    if (rec.closed) return;
    if (i >= limit) {
      if (modeName === 'hang-after') return; // keep the socket open, say nothing
      if (modeName === 'close-after') { res.end(); return; }
      if (modeName === 'reset-after') { res.socket.destroy(); return; }
    }
    if (i > 0 && cfg.delay_ms > 0) await sleep(cfg.delay_ms);
    if (rec.closed) return;
    await writePiece(res, events[i], cfg, rec, i >= Number(cfg.drip_from));
  }
  res.end();
}

async function handleCompletions(req, res, rec) {
  const raw = await readBody(req);
  let body;
  try { body = JSON.parse(raw); } catch { body = null; }
  rec.body = body === null ? raw : body;
  if (body === null || typeof body !== 'object') {
    sendJson(res, 400, { error: { message: "We could not parse the JSON body of your request.", type: 'invalid_request_error', param: null, code: null } });
    return;
  }
  const queued = Array.isArray(config.queue) && config.queue.length ? config.queue.shift() : {};
  const cfg = { ...config, ...queued, ...(Number(config.directives) ? directiveOverride(body) : {}) };
  servedSinceConfig++;
  let status = Number(cfg.status);
  if (servedSinceConfig <= Number(cfg.fail_first)) status = Number(cfg.fail_status);
  if (cfg.mode === 'accept-hang') return; // the client's timeouts must end this
  if (status !== 200) {
    if (cfg.delay_ms > 0) await sleep(cfg.delay_ms);
    sendJson(res, status, errorObject(status), cfg.retry_after !== '' ? { 'retry-after': String(cfg.retry_after) } : {});
    return;
  }
  if (body.stream) {
    await streamCompletion(req, res, body, cfg, rec);
    return;
  }
  const tokens = tokenize(cfg.text);
  const prompt = countWords(body);
  if (cfg.delay_ms > 0) await sleep(cfg.delay_ms);
  sendJson(res, 200, {
    id: 'chatcmpl-' + Math.random().toString(36).slice(2, 14),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: typeof body.model === 'string' ? body.model : cfg.model,
    system_fingerprint: 'fp_fake0001',
    choices: [{ index: 0, message: { role: 'assistant', content: cfg.text, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: prompt, completion_tokens: tokens.length, total_tokens: prompt + tokens.length },
  });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://fake');
  try {
    if (url.pathname === '/__admin/config' && req.method === 'POST') {
      const patch = JSON.parse((await readBody(req)) || '{}');
      if (patch.reset) { config = { ...startup }; rngState = startup.seed >>> 0 || 1; }
      delete patch.reset;
      config = { ...config, ...patch };
      servedSinceConfig = 0;
      if (patch.seed !== undefined) rngState = Number(patch.seed) >>> 0 || 1;
      sendJson(res, 200, config);
      return;
    }
    if (url.pathname === '/__admin/log' && req.method === 'GET') {
      sendJson(res, 200, log);
      return;
    }
    if (url.pathname === '/__admin/close-idle' && req.method === 'POST') {
      res.on('finish', () => server.closeIdleConnections());
      sendJson(res, 200, {});
      return;
    }
    if (url.pathname === '/__admin/log' && req.method === 'DELETE') {
      log = [];
      sendJson(res, 200, log);
      return;
    }
    if (url.pathname.endsWith('/models') && req.method === 'GET') {
      // The model list (what `ragd doctor` asks): the configured model and
      // a second one; --status answers with that error instead.
      log.push({ method: req.method, url: req.url, headers: req.headers, body: null, finished: true });
      if (config.status !== 200) sendJson(res, config.status, errorObject(config.status));
      else sendJson(res, 200, { object: 'list', data: [config.model, 'gpt-fake-2'].map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake' })) });
      return;
    }
    if (url.pathname.endsWith('/chat/completions') && req.method === 'POST') {
      const rec = { method: req.method, url: req.url, headers: req.headers, body: null,
        client_aborted: false, finished: false, closed: false };
      log.push(rec);
      res.on('finish', () => { rec.finished = true; });
      res.on('close', () => {
        rec.closed = true;
        if (!rec.finished) rec.client_aborted = true;
      });
      await handleCompletions(req, res, rec);
      return;
    }
    sendJson(res, 404, { error: { message: `Unknown request URL: ${req.method} ${url.pathname}`, type: 'invalid_request_error', param: null, code: 'unknown_url' } });
  } catch (e) {
    if (!res.headersSent) sendJson(res, 500, { error: { message: String(e), type: 'server_error', param: null, code: null } });
    else res.destroy();
  }
});

server.keepAliveTimeout = 5000;
server.listen(Number(startup.port), '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

if (Number(startup.exit_on_stdin_eof)) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { server.closeAllConnections(); server.close(); process.exit(0); });
