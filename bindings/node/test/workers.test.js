// SPDX-License-Identifier: MIT
// One runtime per environment: worker threads with their own runtime, terminated mid-flight.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const { once } = require('node:events');
const { u, addonPath, lineServer } = require('./helpers.js');

// Starts one of every operation (none of which finishes by itself soon), then tells the parent.
const busyWorker = `
  const { parentPort, workerData } = require('node:worker_threads');
  const u = require(workerData.addon);
  const pending = [
    u.sleep(3600e3),
    u.sleep(3600e3, { timeout: 3600e3 }),
    u.cpu(1e15),
    u.readFile(__filename === undefined ? '/' : '/'),
    u.resolve('localhost'),
    u.fetchLine('127.0.0.1', workerData.port, 'never answered'),
  ];
  for (const p of pending) p.catch(() => {});
  const tick = () => parentPort.postMessage({ active: u.activeTasks() });
  setImmediate(tick);
`;

test('workers terminated mid-flight, 50 times: no crash, nothing left running', async () => {
  const srv = await lineServer({ silent: true });
  try {
    for (let i = 0; i < 50; i++) {
      const w = new Worker(busyWorker, { eval: true, workerData: { addon: addonPath(), port: srv.port } });
      const [msg] = await once(w, 'message');
      assert.ok(msg.active >= 5, `operations were running in the worker (${msg.active})`);
      // Vary the moment: at once, or after the operations got going.
      if (i % 2) await new Promise((r) => setTimeout(r, i % 5));
      const code = await w.terminate();
      assert.equal(code, 1);
    }
    // The sockets the workers opened were closed by their runtimes' teardown.
    while (srv.sockets.size > 0) await new Promise((r) => setTimeout(r, 5));
  } finally {
    await srv.close();
  }
  assert.equal(u.activeTasks(), 0);
});

test('a worker whose calls all settled reports activeTasks() back to 0 and exits normally', async () => {
  const w = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const u = require(workerData.addon);
    (async () => {
      const ac = new AbortController();
      const aborted = u.sleep(3600e3, { signal: ac.signal }).catch((e) => e.name);
      const during = u.activeTasks();
      ac.abort();
      const results = await Promise.all([u.sleep(1), u.cpu(1000), aborted,
        u.sleep(3600e3, { timeout: 5 }).catch((e) => e.name)]);
      parentPort.postMessage({ during, after: u.activeTasks(), results });
    })();
  `, { eval: true, workerData: { addon: addonPath() } });
  // Listen for 'exit' from the start: a worker that posts and exits at once can have both
  // handled in one turn of the parent's loop, 'exit' emitted before the code after the
  // 'message' await runs (it would then wait for an 'exit' already gone).
  const exited = once(w, 'exit');
  const [msg] = await once(w, 'message');
  assert.equal(msg.during, 1);
  assert.equal(msg.after, 0);
  assert.deepEqual(msg.results.slice(2), ['AbortError', 'TimeoutError']);
  const [code] = await exited;
  assert.equal(code, 0);
});

test('a worker that calls process.exit() with operations pending', async () => {
  const w = new Worker(`
    const u = require(require('node:worker_threads').workerData.addon);
    for (const p of [u.sleep(3600e3), u.cpu(1e15), u.resolve('localhost')]) p.catch(() => {});
    setImmediate(() => process.exit(7));
  `, { eval: true, workerData: { addon: addonPath() } });
  const [code] = await once(w, 'exit');
  assert.equal(code, 7);
});

test('workers and the main thread run side by side, each on its own runtime', async () => {
  const workers = [];
  for (let i = 0; i < 4; i++) {
    workers.push(new Worker(`
      const { parentPort, workerData } = require('node:worker_threads');
      const u = require(workerData.addon);
      Promise.all([u.sleep(5), u.sleep(10)]).then(() => parentPort.postMessage(u.activeTasks()));
    `, { eval: true, workerData: { addon: addonPath() } }));
  }
  const messages = workers.map((w) => once(w, 'message'));
  const exits = workers.map((w) => once(w, 'exit'));
  const mine = u.sleep(20);
  assert.equal(u.activeTasks(), 1, 'calls of the workers are not counted here');
  for (const m of messages) assert.deepEqual(await m, [0]);
  await mine;
  for (const e of exits) assert.deepEqual(await e, [0]);
});
