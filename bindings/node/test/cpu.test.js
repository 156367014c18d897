// SPDX-License-Identifier: MIT
// u.cpu(iterations, { signal, timeout }): a CPU loop on the threadpool via to_thread.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { u, until, assertAbortedWith, abortAndExpect } = require('./helpers.js');

test('resolves with a number, the same for the same input', async () => {
  const a = await u.cpu(100000);
  const b = await u.cpu(100000);
  assert.equal(typeof a, 'number');
  assert.equal(a, b);
  assert.equal(await u.cpu(0), await u.cpu(0));
  assert.equal(u.activeTasks(), 0);
});

test('runs in parallel with JavaScript (the loop stays free)', async () => {
  const ac = new AbortController();
  const p = u.cpu(1e15, { signal: ac.signal });
  let turns = 0;
  await until(() => ++turns === 20); // the loop turns while the job runs
  ac.abort();
  await assert.rejects(p, { name: 'AbortError' });
});

test('bad input rejects with a code', async () => {
  await assert.rejects(u.cpu(-1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(u.cpu('1'), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.cpu(2 ** 60), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
});

test('aborted before the call: never starts', async () => {
  const reason = new Error('never');
  const p = u.cpu(1e15, { signal: AbortSignal.abort(reason) });
  assert.equal(u.activeTasks(), 0);
  await assertAbortedWith(p, reason);
});

test('aborted while running: the job stops, then the Promise rejects with the reason', async () => {
  const ac = new AbortController();
  const p = u.cpu(1e15, { signal: ac.signal });
  await until(() => u.activeTasks() === 1);
  await new Promise((r) => setTimeout(r, 5));
  await abortAndExpect(ac, p, new Error('enough'), 0, 'the threadpool job has returned');
});

test('timed out while running: TimeoutError', async () => {
  await assert.rejects(u.cpu(1e15, { timeout: 20 }), { name: 'TimeoutError' });
  assert.equal(u.activeTasks(), 0);
});

test('abort racing completion', async () => {
  const runs = [];
  for (let i = 0; i < 30; i++) {
    const ac = new AbortController();
    const reason = new Error('race');
    runs.push(u.cpu(1000 * i, { signal: ac.signal }).then(
      (v) => assert.equal(typeof v, 'number'),
      (e) => assert.equal(e, reason)));
    setImmediate(() => ac.abort(reason));
  }
  await Promise.all(runs);
  await until(() => u.activeTasks() === 0);
});
