// SPDX-License-Identifier: MIT
// u.fetchLine(host, port, line, { signal, timeout }) against servers on 127.0.0.1.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');
const { u, lineServer, closedPort, until, assertAbortedWith, abortListeners } = require('./helpers.js');

test('writes the line and resolves with the reply line', async () => {
  const srv = await lineServer();
  try {
    assert.equal(await u.fetchLine('127.0.0.1', srv.port, 'hello'), 'echo:hello');
    assert.equal(await u.fetchLine('localhost', srv.port, 'via name'), 'echo:via name');
    assert.equal(u.activeTasks(), 0);
  } finally {
    await srv.close();
  }
});

test('a refused connection rejects with ECONNREFUSED, errno and syscall connect', async () => {
  const port = await closedPort();
  await assert.rejects(u.fetchLine('127.0.0.1', port, 'x'), (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.code, 'ECONNREFUSED');
    assert.equal(e.errno, -require('node:os').constants.errno.ECONNREFUSED);
    assert.equal(e.syscall, 'connect');
    return true;
  });
});

test('bad input rejects with a code', async () => {
  await assert.rejects(u.fetchLine('127.0.0.1', 0, 'x'), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(u.fetchLine('127.0.0.1', '80', 'x'), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.fetchLine('127.0.0.1', 80), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.fetchLine(null, 80, 'x'), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('aborted before the call: no connection is made', async () => {
  const srv = await lineServer();
  try {
    const reason = new Error('no');
    await assertAbortedWith(u.fetchLine('127.0.0.1', srv.port, 'x', { signal: AbortSignal.abort(reason) }), reason);
    assert.equal(await srv.connections(), 0);
  } finally {
    await srv.close();
  }
});

test('aborted while waiting for the reply: rejects with the reason, the socket is closed', async () => {
  const srv = await lineServer({ silent: true });
  try {
    const ac = new AbortController();
    const p = u.fetchLine('127.0.0.1', srv.port, 'ping', { signal: ac.signal });
    await until(() => srv.sockets.size === 1);
    const [peer] = srv.sockets;
    await once(peer, 'data'); // the line was written; now the client waits for the reply
    const closed = once(peer, 'close');
    const reason = new Error('hang up');
    ac.abort(reason);
    await assertAbortedWith(p, reason);
    assert.equal(abortListeners(ac.signal), 0);
    assert.equal(u.activeTasks(), 0);
    await closed; // the client's handle was closed by the task's cleanup
  } finally {
    await srv.close();
  }
});

test('timed out while waiting for the reply: TimeoutError', async () => {
  const srv = await lineServer({ silent: true });
  try {
    await assert.rejects(u.fetchLine('127.0.0.1', srv.port, 'ping', { timeout: 30 }), { name: 'TimeoutError' });
  } finally {
    await srv.close();
  }
});

test('abort racing completion', async () => {
  const srv = await lineServer();
  try {
    const runs = [];
    for (let i = 0; i < 30; i++) {
      const ac = new AbortController();
      const reason = new Error('race');
      runs.push(u.fetchLine('127.0.0.1', srv.port, 'n' + i, { signal: ac.signal }).then(
        (v) => assert.equal(v, 'echo:n' + i),
        (e) => assert.equal(e, reason)));
      const abort = () => ac.abort(reason);
      if (i % 3 === 0) setImmediate(abort);
      else if (i % 3 === 1) setTimeout(abort, 1);
      else setTimeout(abort, 3);
    }
    await Promise.all(runs);
    await until(() => u.activeTasks() === 0);
  } finally {
    await srv.close();
  }
});
