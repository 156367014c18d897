// SPDX-License-Identifier: MIT
// Processes that end while operations are pending: no crash, no hang, no report on stderr.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { addonPath, lineServer } = require('./helpers.js');

function run(script, port) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script], {
      env: { ...process.env, ADDON: addonPath(), PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60000, // a hang fails the test (signal SIGTERM) instead of blocking the suite
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const startAll = `
  const u = require(process.env.ADDON);
  const ac = new AbortController();
  for (const p of [
    u.sleep(3600e3), u.sleep(3600e3, { signal: ac.signal, timeout: 3600e3 }), u.cpu(1e15),
    u.readFile('/etc/hostname'), u.resolve('localhost'),
    u.fetchLine('127.0.0.1', Number(process.env.PORT), 'no reply'),
  ]) p.catch(() => {});
`;

test('process.exit() with every kind of operation pending', async () => {
  const srv = await lineServer({ silent: true });
  try {
    const r = await run(startAll + `setTimeout(() => { console.log('exiting', u.activeTasks()); process.exit(0); }, 20);`, srv.port);
    assert.equal(r.signal, null);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /exiting [1-9]/);
    assert.equal(r.stderr, '');
  } finally {
    await srv.close();
  }
});

test('an uncaught exception with operations pending ends the process normally (exit 1)', async () => {
  const srv = await lineServer({ silent: true });
  try {
    const r = await run(startAll + `setImmediate(() => { throw new Error('boom'); });`, srv.port);
    assert.equal(r.signal, null);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /boom/);
    assert.doesNotMatch(r.stderr, /uvasync|leaked|Assertion|terminate called/);
  } finally {
    await srv.close();
  }
});

test('pending calls keep the process alive until they settle, then it exits by itself', async () => {
  const r = await run(`
    const u = require(process.env.ADDON);
    u.sleep(30).then(() => console.log('slept', u.activeTasks()));
    u.sleep(3600e3, { timeout: 10 }).catch((e) => console.log(e.name));
  `, 0);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'TimeoutError\nslept 0\n');
  assert.equal(r.stderr, '');
});

test('a script that loads the addon and never calls it exits at once', async () => {
  const r = await run(`require(process.env.ADDON); console.log('ok');`, 0);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'ok\n');
});
