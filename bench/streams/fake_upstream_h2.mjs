// fake_upstream_h2.mjs - the dripping OpenAI-compatible upstream of
// fake_upstream.c, spoken over HTTP/2 with TLS (what real providers speak),
// on Node's built-in http2 module. Used by bench/streams/run.sh (H2=1) and
// by tests/integration/streaming_h2.test.mjs.
//
//   node fake_upstream_h2.mjs --cert CERT.pem --key KEY.pem [--port N]
//        [--tokens N] [--delay-ms N] [--max-streams N]
//
// POST .../chat/completions gets the same events as from fake_upstream.c: a
// role-only chunk at once, --tokens content chunks (" tokN") --delay-ms
// apart (so the fake's own delay before the first token is --delay-ms), a
// finish chunk, a usage chunk when the body asks for
// stream_options.include_usage, and "data: [DONE]". ALPN offers h2 and
// http/1.1 (so `curl` can read the stats without HTTP/2); answers are
// counted by the protocol they arrived on.
//
// GET /__admin/stats answers {"requests","completed","aborted","open",
// "h2_requests","sessions","sessions_open","max_sessions_open",
// "max_streams_per_session","first_token_late_ms_p50","first_token_late_ms_p99"}:
// the last two say how late (ms past --delay-ms) this process itself sent
// the first tokens, which a starved machine makes nonzero; sessions are TLS connections that spoke
// HTTP/2, so sessions << requests shows that the client multiplexes. An
// answer is aborted when its stream closed before the end (the client
// cancelled it).
//
// Prints "LISTENING <port>" once bound; SIGTERM or SIGINT prints the counters
// on stderr and exits. Loopback only.
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';

const opt = { port: 0, tokens: 40, delayMs: 250, maxStreams: 1000, cert: '', key: '' };
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  const [k, v] = [process.argv[i], process.argv[i + 1]];
  if (k === '--port') opt.port = Number(v);
  else if (k === '--tokens') opt.tokens = Number(v);
  else if (k === '--delay-ms') opt.delayMs = Number(v);
  else if (k === '--max-streams') opt.maxStreams = Number(v);
  else if (k === '--cert') opt.cert = v;
  else if (k === '--key') opt.key = v;
  else {
    console.error(`fake_upstream_h2: unknown option ${k}`);
    process.exit(2);
  }
}
if (!opt.cert || !opt.key) {
  console.error('fake_upstream_h2: --cert and --key are required');
  process.exit(2);
}

const st = {
  requests: 0,
  completed: 0,
  aborted: 0,
  open: 0,
  h2_requests: 0,
  sessions: 0,
  sessions_open: 0,
  max_sessions_open: 0,
  max_streams_per_session: 0,
};
const id = `chatcmpl-benchh2${process.pid}`;
const head =
  `data: {"id":"${id}","object":"chat.completion.chunk","created":1700000000,` +
  '"model":"gpt-fake-1","system_fingerprint":"fp_fake0001","choices":[';

function event(k, includeUsage) {
  if (k === 0)
    return head + '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n';
  if (k <= opt.tokens)
    return head + `{"index":0,"delta":{"content":" tok${k}"},"logprobs":null,"finish_reason":null}]}\n\n`;
  if (k === opt.tokens + 1)
    return head + '{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n';
  if (k === opt.tokens + 2 && includeUsage)
    return head + `],"usage":{"prompt_tokens":100,"completion_tokens":${opt.tokens},"total_tokens":${opt.tokens + 100}}}\n\n`;
  return null; // then [DONE]
}

// Timers: every wait is the same length, so one FIFO of due answers and one
// timer at its head cost O(1) per event, not one timer object per event.
const queue = [];
let qhead = 0;
let timer = null;
function arm() {
  if (timer || qhead >= queue.length) return;
  timer = setTimeout(tick, Math.max(0, queue[qhead].due - Date.now()));
}
function tick() {
  timer = null;
  const now = Date.now();
  while (qhead < queue.length && queue[qhead].due <= now) step(queue[qhead++]);
  if (qhead > 4096 && qhead * 2 > queue.length) {
    queue.splice(0, qhead);
    qhead = 0;
  }
  arm();
}

// How late this process itself sent each answer's first token (ms past its
// due time): on a starved machine the fake's own lateness is not ragd's.
const late = [];
function pct(v, p) {
  if (!v.length) return 0;
  const s = [...v].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function step(a) {
  if (a.closed) return;
  if (a.next === 1) late.push(Date.now() - a.due);
  const text = event(a.next++, a.includeUsage);
  if (text === null) {
    a.done = true;
    a.res.end('data: [DONE]\n\n');
    return;
  }
  a.res.write(text);
  a.due = Date.now() + opt.delayMs; // queued once at a time, in due order
  queue.push(a);
  arm();
}

function answerSimple(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

const server = http2.createSecureServer(
  {
    cert: readFileSync(opt.cert),
    key: readFileSync(opt.key),
    allowHTTP1: true,
    settings: { maxConcurrentStreams: opt.maxStreams },
  },
  (req, res) => {
    if (req.method === 'GET' && req.url === '/__admin/stats')
      return answerSimple(res, 200, { ...st, first_token_late_ms_p50: pct(late, 50), first_token_late_ms_p99: pct(late, 99) });
    if (req.method !== 'POST' || !req.url.endsWith('/chat/completions'))
      return answerSimple(res, 404, { error: { message: 'unknown url' } });
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString('utf8');
      st.requests++;
      if (req.httpVersionMajor === 2) {
        st.h2_requests++;
        const s = req.stream.session;
        s.active = (s.active || 0) + 1;
        if (s.active > st.max_streams_per_session) st.max_streams_per_session = s.active;
        res.on('close', () => s.active--);
      }
      st.open++;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      const a = { next: 0, includeUsage: /"include_usage"\s*:\s*true/.test(body), res, done: false, closed: false, due: 0 };
      res.on('close', () => {
        st.open--;
        a.closed = true;
        if (a.done && res.writableFinished) st.completed++;
        else st.aborted++;
      });
      step(a);
    });
  },
);
server.on('session', (s) => {
  st.sessions++;
  st.sessions_open++;
  if (st.sessions_open > st.max_sessions_open) st.max_sessions_open = st.sessions_open;
  s.on('close', () => st.sessions_open--);
  s.on('error', () => {});
});
server.on('sessionError', () => {});
server.on('tlsClientError', () => {});
server.listen(opt.port, '127.0.0.1', () => {
  console.log(`LISTENING ${server.address().port}`);
});
for (const sig of ['SIGTERM', 'SIGINT'])
  process.on(sig, () => {
    console.error(`fake_upstream_h2: ${JSON.stringify(st)}`);
    process.exit(0);
  });
