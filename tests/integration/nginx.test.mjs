// Debian's nginx with the shipped proxy settings (deploy/nginx/ragd-proxy.conf)
// in front of two ragd nodes: the first event of an answer reaches the client
// while the model is still answering (nothing buffers the stream), and
// questions keep being answered when one node stops.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { writeFileSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { startServer, startFakeOpenAI, ingestSampleKb, tempDir, sleep, SOURCE_DIR } from './helpers.mjs';

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startNginx(ports) {
  const dir = tempDir('ragd-nginx-');
  const port = await freePort();
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(dir, d));
  const snippet = path.join(SOURCE_DIR, 'deploy', 'nginx', 'ragd-proxy.conf');
  const isRoot = process.getuid && process.getuid() === 0;
  writeFileSync(path.join(dir, 'nginx.conf'), `
${isRoot ? 'user root;' : ''}
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream ragd_nodes {
    ${ports.map((p) => `server 127.0.0.1:${p} max_fails=1 fail_timeout=30s;`).join('\n    ')}
    keepalive 8;
  }
  server {
    listen 127.0.0.1:${port};
    location / { include ${snippet}; }
  }
}
`);
  const child = spawn(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (child.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
    await sleep(50);
  }
  return {
    base: `http://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('nginx streams answers unbuffered and fails over between two nodes', { skip: !NGINX && 'nginx is not installed (scripts/install-deps.sh --test installs it)' }, async (t) => {
  execFileSync(NGINX, ['-v']);
  const fake = await startFakeOpenAI();
  t.after(() => fake.stop());
  // 30 words, 150 ms apart: the model takes about 4.5 s to answer.
  const words = Array.from({ length: 30 }, (_, i) => ` word${i}`).join('') + ' [1].';
  await fake.configure({ reset: true, text: words, delay_ms: 150 });
  const env = { RAGD_LLM_BASE_URL: fake.url, RAGD_LLM_RETRIES: '0' };
  const a = await startServer({ env });
  const b = await startServer({ env });
  t.after(async () => {
    await a.stop();
    await b.stop();
  });
  await ingestSampleKb(a.base);
  await ingestSampleKb(b.base);
  const proxy = await startNginx([a.port, b.port]);
  t.after(() => proxy.stop());

  const started = Date.now();
  const res = await fetch(proxy.base + '/v1/chat', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'How long do refunds take?' }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const reader = res.body.getReader();
  let text = '';
  let firstDeltaAt = 0;
  let upstreamBusyAtFirstDelta;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString('utf8');
    if (!firstDeltaAt && text.includes('event: text_delta')) {
      firstDeltaAt = Date.now();
      const entry = (await fake.log()).at(-1);
      upstreamBusyAtFirstDelta = entry && !entry.finished;
    }
  }
  const endedAt = Date.now();
  assert.ok(firstDeltaAt, 'a text_delta arrived');
  assert.equal(upstreamBusyAtFirstDelta, true, 'the first event reached the client while the model was still answering');
  assert.ok(endedAt - firstDeltaAt > 2000, `first text ${firstDeltaAt - started} ms, end ${endedAt - started} ms`);
  assert.match(text, /event: done/);

  // One node stops: questions are still answered through the other.
  await fake.configure({ reset: true, text: 'Still here [1].' });
  await a.stop();
  for (let i = 0; i < 4; i++) {
    const r = await fetch(proxy.base + '/v1/chat', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'How long do refunds take?' }),
    });
    assert.equal(r.status, 200);
    assert.match(await r.text(), /event: done/);
  }
});
