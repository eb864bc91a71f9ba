// fake_common.mjs - the machinery fake_anthropic.mjs and fake_gemini.mjs share
// (node:http only): command line, run-time config, request log, byte splits
// and the fault modes. Conventions are those of fake_openai.mjs:
//
//   --port 0 [--text S] [--split whole|bytes|random] [--delay-ms N] [--drip-ms N]
//   [--status N] [--retry-after V] [--fail-first N] [--fail-status N]
//   [--mode normal|hang-after:N|close-after:N|reset-after:N|garbage|stream-error|
//          accept-hang|big-line:N|safety] [--seed N] [--exit-on-stdin-eof 1]
//
// Prints `LISTENING <port>` once bound. POST /__admin/config merges a JSON
// patch ({"reset":true} first restores the start-up values) and restarts the
// fail-first count; GET /__admin/log lists the API requests (method, url,
// headers, body, client_aborted, finished); DELETE /__admin/log clears it.
// Events are numbered from 1 as the provider's wire format orders them.
import http from 'node:http';

export const DEFAULT_TEXT =
  ' Refunds are issued within 3 business days [1].\n  Second line with "quotes", emoji 😀 and 한국어.';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Token-like pieces: a word with its leading spaces, or a run of spaces.
export function tokenize(text) {
  return text.match(/\s*\S+|\s+/gu) || [];
}

// provider: { name, matches(url, method), errorBody(status), events(body, cfg)
// -> { status, headers, events: [string] }, prepare(body, cfg) optional }
export function runFake(provider) {
  const startup = {
    port: 0, text: DEFAULT_TEXT, split: 'whole', delay_ms: 0, drip_ms: 0, status: 200,
    retry_after: '', fail_first: 0, fail_status: 503, mode: 'normal', seed: 1,
    exit_on_stdin_eof: 0,
  };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-/g, '_');
    if (!(key in startup)) {
      process.stderr.write(`${provider.name}: unknown option ${argv[i]}\n`);
      process.exit(2);
    }
    startup[key] = typeof startup[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  let config = { ...startup };
  let log = [];
  let served = 0;
  let rng = startup.seed >>> 0 || 1;
  const random = () => {
    rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
    return rng / 0x100000000;
  };

  const readBody = (req) => new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
  const sendJson = (res, status, obj, extra = {}) => {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra });
    res.end(body);
  };

  async function writePiece(res, piece, cfg, rec) {
    const data = Buffer.from(piece, 'utf8');
    if (Number(cfg.drip_ms) > 0 || cfg.split === 'bytes') {
      for (let i = 0; i < data.length; i++) {
        if (rec.closed) return;
        res.write(data.subarray(i, i + 1));
        if (Number(cfg.drip_ms) > 0) await sleep(Number(cfg.drip_ms));
        else if (i % 8 === 7) await sleep(1);
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

  async function handleApi(req, res, rec) {
    const raw = await readBody(req);
    let body;
    try { body = JSON.parse(raw); } catch { body = null; }
    rec.body = body === null ? raw : body;
    if (body === null || typeof body !== 'object') {
      sendJson(res, 400, provider.errorBody(400));
      return;
    }
    const cfg = { ...config };
    served++;
    let status = Number(cfg.status);
    if (served <= Number(cfg.fail_first)) status = Number(cfg.fail_status);
    if (cfg.mode === 'accept-hang') return;
    if (status !== 200) {
      if (cfg.delay_ms > 0) await sleep(cfg.delay_ms);
      sendJson(res, status, provider.errorBody(status),
        cfg.retry_after !== '' ? { 'retry-after': String(cfg.retry_after) } : {});
      return;
    }
    const events = provider.events(body, cfg);
    if (String(cfg.mode).startsWith('big-line')) {
      const n = Number(String(cfg.mode).split(':')[1] || 10 * 1024 * 1024);
      events.splice(1, 0, 'data: ' + 'x'.repeat(n) + '\n\n');
    }
    const [modeName, modeArg] = String(cfg.mode).split(':');
    const limit = ['hang-after', 'close-after', 'reset-after'].includes(modeName) ? Number(modeArg) : Infinity;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    for (let i = 0; i < events.length; i++) {
      if (rec.closed) return;
      if (i >= limit) {
        if (modeName === 'hang-after') return;
        if (modeName === 'close-after') { res.end(); return; }
        if (modeName === 'reset-after') { res.socket.destroy(); return; }
      }
      if (i > 0 && cfg.delay_ms > 0) await sleep(cfg.delay_ms);
      if (rec.closed) return;
      await writePiece(res, events[i], cfg, rec);
    }
    res.end();
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://fake');
    try {
      if (url.pathname === '/__admin/config' && req.method === 'POST') {
        const patch = JSON.parse((await readBody(req)) || '{}');
        if (patch.reset) { config = { ...startup }; rng = startup.seed >>> 0 || 1; }
        delete patch.reset;
        config = { ...config, ...patch };
        served = 0;
        if (patch.seed !== undefined) rng = Number(patch.seed) >>> 0 || 1;
        sendJson(res, 200, config);
        return;
      }
      if (url.pathname === '/__admin/log' && req.method === 'GET') { sendJson(res, 200, log); return; }
      if (url.pathname === '/__admin/log' && req.method === 'DELETE') { log = []; sendJson(res, 200, log); return; }
      if (provider.matches(url, req.method)) {
        const rec = { method: req.method, url: req.url, headers: req.headers, body: null,
          client_aborted: false, finished: false, closed: false };
        log.push(rec);
        res.on('finish', () => { rec.finished = true; });
        res.on('close', () => { rec.closed = true; if (!rec.finished) rec.client_aborted = true; });
        await handleApi(req, res, rec);
        return;
      }
      sendJson(res, 404, provider.errorBody(404));
    } catch (e) {
      if (!res.headersSent) sendJson(res, 500, provider.errorBody(500));
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
}
