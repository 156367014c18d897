// SPDX-License-Identifier: MIT
// Many calls at once: one AbortController for 10,000 sleeps; a mixed crowd with timeouts.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { u, until, abortListeners } = require('./helpers.js');

test('10,000 concurrent sleeps aborted by one controller', async () => {
  const N = 10000;
  const ac = new AbortController();
  const reason = new Error('all of them');
  const calls = [];
  for (let i = 0; i < N; i++) calls.push(u.sleep(3600e3, { signal: ac.signal }));
  assert.equal(u.activeTasks(), N);
  assert.equal(abortListeners(ac.signal), N);
  await new Promise((r) => setImmediate(r)); // every task is parked on its sleep
  ac.abort(reason);
  const results = await Promise.allSettled(calls);
  assert.equal(results.length, N);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal(r.reason, reason);
  }
  assert.equal(u.activeTasks(), 0);
  assert.equal(abortListeners(ac.signal), 0, 'every listener was removed');
});

test('a crowd of different calls with timeouts and signals all settle and clean up', async () => {
  const ac = new AbortController();
  const calls = [];
  for (let i = 0; i < 500; i++) {
    calls.push(u.sleep(i % 7, { timeout: 3 }).then(() => 'done', (e) => e.name));
    calls.push(u.sleep(1e9, { signal: ac.signal, timeout: 1 + (i % 5) }).then(() => 'done', (e) => e.name));
    calls.push(u.cpu(1000, { signal: ac.signal }).then(() => 'done', (e) => e.name));
  }
  setTimeout(() => ac.abort(), 2);
  const names = new Set(await Promise.all(calls));
  for (const n of names) assert.ok(['done', 'TimeoutError', 'AbortError'].includes(n), n);
  await until(() => u.activeTasks() === 0);
  assert.equal(abortListeners(ac.signal), 0);
});
