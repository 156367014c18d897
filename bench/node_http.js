// SPDX-License-Identifier: MIT
// The Node.js HTTP keep-alive server of W4 (bench/README.md).
//
//   node node_http.js <port>
//
// `GET /` answers 200 with the 13-byte body `Hello, World!`, any other path 404. Node's own
// request timeout bounds each request to 5 s (and the keep-alive idle time to 5 s).
'use strict';

const http = require('node:http');

const port = Number(process.argv[2]);
const body = 'Hello, World!';

const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
        res.end(body);
    } else {
        res.writeHead(404, { 'Content-Length': 0 });
        res.end();
    }
});
server.requestTimeout = 5000;
server.headersTimeout = 5000;
server.keepAliveTimeout = 5000;
server.listen(port, '127.0.0.1', 1024);
