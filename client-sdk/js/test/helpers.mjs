// Test helpers: start the real heraldd on port 0, mint development tokens, call the HTTP API.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const API_KEY = 'herald-dev-api-key';
const SECRET = 'herald-dev-secret';

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

// A token for `sub` signed with the server's development secret.
export function mintToken(sub, ttlS = 3600, extra = {}) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + ttlS, ...extra }));
  const sig = createHmac('sha256', SECRET).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}

export async function waitFor(predicate, timeoutMs = 5000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Starts heraldd (path in $HERALDD) with every listener on 127.0.0.1:0.
export async function startHeraldd(args = []) {
  const bin = process.env.HERALDD;
  if (!bin) throw new Error('set HERALDD to the heraldd binary');
  const dir = mkdtempSync(join(tmpdir(), 'heraldd-js-'));
  const ready = join(dir, 'ready.json');
  const proc = spawn(bin, ['--ready-file', ready, '--listen.tcp', '127.0.0.1:0', '--listen.api', '127.0.0.1:0',
    '--listen.ws', '127.0.0.1:0', '--server.loops', '2', '--store.dir', join(dir, 'data'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  const addr = await waitFor(() => {
    if (exited) throw new Error(`heraldd exited:\n${log}`);
    if (!existsSync(ready)) return null;
    try { return JSON.parse(readFileSync(ready, 'utf8')); } catch { return null; }
  }, 15000, 'heraldd ready file');
  return {
    ws: `ws://${addr.ws}/ws`,
    http: `http://${addr.ws}`,
    api: `http://${addr.api}`,
    tcp: addr.tcp,
    log: () => log,
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        await waitFor(() => exited, 10000, 'heraldd exit').catch(() => proc.kill('SIGKILL'));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function api(server, path, body) {
  const r = await fetch(server.api + path, {
    method: 'POST', headers: { 'X-API-Key': API_KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

export function publish(server, channel, payload, extra = {}) {
  return api(server, '/v1/publish', { channel, type: 'test', payload, ...extra });
}
