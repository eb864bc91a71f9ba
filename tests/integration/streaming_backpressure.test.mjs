// Backpressure as a slow client sees it: a client that stops reading is cut
// after RAGD_STREAM_STALL_MS and its upstream request is cancelled; a client
// that lets the queue fill is cut at RAGD_STREAM_QUEUE_BYTES instead of
// growing ragd's memory; and other streams run normally meanwhile.
//
// The stalled client is a raw socket that reads the response head and then
// stops reading (socket.pause()), so the kernel buffers fill and ragd's own
// queue starts to hold bytes, which is what the limits are about.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { startServer, startFakeOpenAI, ingestSampleKb, chatStream, sleep } from './helpers.mjs';

const STALL_MS = 1500;
const SHORT = ' Refunds take 3 business days [1].';
let fake;

before(async () => {
  fake = await startFakeOpenAI();
});
after(async () => {
  await fake?.stop();
});

// Opens POST /v1/chat on a raw socket, waits for the response head, then
// stops reading. Resolves {socket, head, rest()} where rest() resumes reading
// and resolves everything that arrives until the connection closes.
function stalledClient(base, message) {
  const { hostname, port } = new URL(base);
  const body = JSON.stringify({ message, stream: true });
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks = [];
    let headSeen = false;
    socket.on('error', () => {}); // a cut may arrive as a reset
    socket.on('connect', () => {
      socket.write(
        `POST /v1/chat HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    });
    const closed = new Promise((r) => socket.on('close', r));
    socket.on('data', (d) => {
      chunks.push(d);
      if (!headSeen && Buffer.concat(chunks).includes('\r\n\r\n')) {
        headSeen = true;
        socket.pause(); // the client stops reading here
        resolve({
          socket,
          head: Buffer.concat(chunks).toString('latin1').split('\r\n\r\n')[0],
          async rest() {
            socket.resume();
            await closed;
            return Buffer.concat(chunks).toString('utf8');
          },
        });
      }
    });
    setTimeout(() => reject(new Error('no response head within 20 s')), 20000);
  });
}

async function waitFor(what, fn, timeoutMs = 30000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function firstRecord() {
  const log = await fake.log();
  return log.length ? log[0] : undefined;
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

test('a client that stops reading is cut after the stall limit, its upstream cancelled, while other streams run', async () => {
  const srv = await startServer({
    env: {
      RAGD_LLM_BASE_URL: fake.url,
      RAGD_LLM_MODEL: 'gpt-fake-1',
      RAGD_STREAM_STALL_MS: String(STALL_MS),
      RAGD_STREAM_QUEUE_BYTES: String(8 * 1024 * 1024),
      RAGD_RESUME_MAX_BYTES: String(1024 * 1024),
      RAGD_LOG_LEVEL: 'info',
    },
  });
  try {
    await ingestSampleKb(srv.base);
    // A long answer (32 MB) dripped at about 1 MB/s: the kernel buffers
    // fill within seconds, and the queue limit (8 MiB) is still far away
    // when the stall limit strikes.
    const word = 'x'.repeat(2000);
    await fake.configure({ reset: true, delay_ms: 2, text: ` ${word}`.repeat(16000) });
    await fetch(fake.base + '/__admin/log', { method: 'DELETE' });
    const slow = await stalledClient(srv.base, 'How do refunds work?');
    assert.match(slow.head, /^HTTP\/1\.1 200/);
    await waitFor('the stalled stream to reach the upstream', firstRecord);

    // While that client holds its stream, others are served in full.
    await fake.configure({ delay_ms: 0, text: SHORT });
    const others = await Promise.all(
      [1, 2, 3, 4].map(() => chatStream(srv.base, { message: 'How long do refunds take?' })),
    );
    const stalledRecord = await firstRecord();
    assert.equal(stalledRecord.client_aborted, false, 'the other streams finished while the slow one was still open');
    for (const o of others) {
      assert.equal(o.status, 200);
      assert.equal(o.events.at(-1).event, 'done', `another stream ended with ${o.events.at(-1)?.event}`);
      const text = o.events.filter((e) => e.event === 'text_delta').map((e) => JSON.parse(e.data).content).join('');
      assert.equal(text, SHORT);
    }

    // The stalled client is cut and its upstream request cancelled.
    const t0 = Date.now();
    const rec = await waitFor('the upstream request to be cancelled', async () => {
      const r = await firstRecord();
      return r.client_aborted ? r : undefined;
    });
    assert.equal(rec.finished, false, 'the upstream never finished the answer');
    assert.match(srv.stderr(), /read nothing for \d+ ms; cutting it/);
    const m = /read nothing for (\d+) ms/.exec(srv.stderr());
    assert.ok(Number(m[1]) >= STALL_MS, `cut after ${m[1]} ms, limit ${STALL_MS} ms`);
    assert.ok(Date.now() - t0 < 30000);
    // What the client gets when it reads again ends without done: the
    // connection was closed mid-stream, not finished.
    const got = await slow.rest();
    assert.ok(got.includes('event: text_delta'), 'the client had received part of the answer');
    assert.ok(!got.includes('event: done'), 'a cut stream has no done event');
    assert.ok(!got.endsWith('0\r\n\r\n'), 'a cut stream has no last chunk');
  } finally {
    await srv.stop();
  }
});

test('per-stream queued bytes stay bounded: a paused client with a fast upstream is cut at the queue limit', async () => {
  const QUEUE = 256 * 1024;
  const srv = await startServer({
    env: {
      RAGD_LLM_BASE_URL: fake.url,
      RAGD_LLM_MODEL: 'gpt-fake-1',
      RAGD_STREAM_STALL_MS: '600000', // only the queue limit can cut it here
      RAGD_STREAM_QUEUE_BYTES: String(QUEUE),
      RAGD_RESUME_MAX_BYTES: String(1024 * 1024),
    },
  });
  try {
    await ingestSampleKb(srv.base);
    // 64 MB of answer, fast. (delay_ms 1, not 0: with no wait at all the
    // node fake queues the whole answer in one synchronous loop.)
    const word = 'y'.repeat(8000);
    await fake.configure({ reset: true, delay_ms: 1, text: ` ${word}`.repeat(8000) });
    await fetch(fake.base + '/__admin/log', { method: 'DELETE' });
    const rss0 = rssKb(srv.child.pid);
    const slow = await stalledClient(srv.base, 'How do refunds work?');
    let peak = rss0;
    const rec = await waitFor('the upstream request to be cancelled', async () => {
      peak = Math.max(peak, rssKb(srv.child.pid));
      const r = await firstRecord();
      return r?.client_aborted ? r : undefined;
    });
    assert.equal(rec.finished, false, 'ragd stopped taking the answer instead of holding all of it');
    // Without a sanitizer (whose quarantine keeps freed memory), ragd's
    // memory grew by far less than the 64 MB answer.
    if (!process.env.ASAN_OPTIONS)
      assert.ok(peak - rss0 < 24 * 1024, `ragd grew by ${peak - rss0} KiB for one paused stream`);
    const got = await slow.rest();
    assert.ok(!got.includes('event: done'));
    // The server still answers normally.
    await fake.configure({ reset: true, text: SHORT });
    const after = await chatStream(srv.base, { message: 'How long do refunds take?' });
    assert.equal(after.events.at(-1).event, 'done');
  } finally {
    await srv.stop();
  }
});
