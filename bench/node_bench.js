// SPDX-License-Identifier: MIT
// The Node.js implementation of the timer workloads in bench/README.md.
//
//   node node_bench.js <workload> <n>
//
// Prints one line: `<workload> node n=<n> <metric>=<value> ...`. Timeouts are AbortSignals
// passed to the promise form of setTimeout, which is how Node code bounds a wait.
'use strict';

const { setTimeout: sleep, setImmediate: immediate } = require('node:timers/promises');

const now = () => process.hrtime.bigint();
const ms = (t0) => Number(now() - t0) / 1e6;

async function w1(n) {
    await immediate();
    const t0 = now();
    for (let i = 0; i < n; ++i) {
        await new Promise((resolve) => setImmediate(resolve));
    }
    return Number(now() - t0) / n;
}

let fired = 0;

async function w2Task() {
    await sleep(1, undefined, { signal: AbortSignal.timeout(10000) });
}

async function w2bTask() {
    try {
        await sleep(10000, undefined, { signal: AbortSignal.timeout(1) });
    } catch (e) {
        if (e.name !== 'AbortError') {
            throw e;
        }
        ++fired;
    }
}

async function spawnAndWait(n, body) {
    const t0 = now();
    const tasks = [];
    for (let i = 0; i < n; ++i) {
        tasks.push(body());
    }
    for (const t of tasks) {
        await t;
    }
    return ms(t0);
}

async function w3(n) {
    const controllers = [];
    const tasks = [];
    for (let i = 0; i < n; ++i) {
        const c = new AbortController();
        controllers.push(c);
        tasks.push(sleep(3600 * 1000, undefined, { signal: c.signal }).catch((e) => {
            if (e.name !== 'AbortError') {
                throw e;
            }
        }));
    }
    await immediate(); // every task has started its timer
    const t0 = now();
    for (const c of controllers) {
        c.abort();
    }
    await Promise.all(tasks);
    return ms(t0);
}

async function main() {
    const [w, nText] = process.argv.slice(2);
    const n = Number(nText);
    if (!(n > 0)) {
        console.error('usage: node node_bench.js W1|W2|W2b|W3 <n>');
        process.exit(2);
    }
    switch (w) {
    case 'W1':
        console.log(`W1 node n=${n} ns_per_op=${(await w1(n)).toFixed(2)}`);
        break;
    case 'W2':
        console.log(`W2 node n=${n} ms=${(await spawnAndWait(n, w2Task)).toFixed(3)} fired=0`);
        break;
    case 'W2b': {
        const t = await spawnAndWait(n, w2bTask);
        console.log(`W2b node n=${n} ms=${t.toFixed(3)} fired=${fired}`);
        break;
    }
    case 'W3':
        console.log(`W3 node n=${n} ms=${(await w3(n)).toFixed(3)}`);
        break;
    default:
        console.error(`node_bench.js: unknown workload ${w}`);
        process.exit(2);
    }
}

main();
