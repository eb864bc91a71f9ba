// pglite_server.mjs - PGlite (Postgres compiled to WASM, with pgvector) behind
// its Postgres wire-protocol socket server, as a CTest fixture for the store
// conformance suite: pgvector is not packaged in Debian 12.
//
//   node tests/pglite_server.mjs start STATE   start on a free loopback port;
//                                              STATE/url, STATE/pid
//   node tests/pglite_server.mjs stop STATE    stop it (by its recorded pid)
import { spawn } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { mkdirSync, openSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const [cmd, state] = process.argv.slice(2);
if (!cmd || !state) {
  console.error('usage: pglite_server.mjs start|stop STATE');
  process.exit(2);
}

function stop() {
  const pidFile = join(state, 'pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8'));
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // already gone
  }
  rmSync(pidFile, { force: true });
  rmSync(join(state, 'url'), { force: true });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

if (cmd === 'stop') {
  stop();
} else if (cmd === 'start') {
  mkdirSync(state, { recursive: true });
  stop();
  // The package's own bin (its exports do not list the script).
  const root = join(dirname(new URL(import.meta.url).pathname), '..');
  const server = join(root, 'node_modules/@electric-sql/pglite-socket/dist/scripts/server.js');
  const port = await freePort();
  const log = openSync(join(state, 'server.log'), 'w');
  // Connections of a ragd pool plus the test's own: PGlite runs one query at
  // a time and multiplexes the sockets.
  const child = spawn(
    process.execPath,
    [server, `--port=${port}`, '--host=127.0.0.1', '--extensions=@electric-sql/pglite-pgvector:vector', '--max-connections=32'],
    { detached: true, stdio: ['ignore', log, log] },
  );
  child.unref();
  writeFileSync(join(state, 'pid'), String(child.pid));
  const deadline = Date.now() + 60000;
  while (!(await canConnect(port))) {
    if (Date.now() > deadline || child.exitCode !== null) {
      console.error(readFileSync(join(state, 'server.log'), 'utf8'));
      stop();
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // sslmode=disable: the socket server does not speak TLS.
  const url = `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`;
  writeFileSync(join(state, 'url'), url + '\n');
  console.log(url);
} else {
  console.error(`unknown command ${cmd}`);
  process.exit(2);
}
