// SPDX-License-Identifier: MIT
// A keep-alive HTTP/1.1 server that answers `GET /` with `Hello, World!` (docs/servers.md).
#pragma once

#include <uvasync/io/tcp.hpp>
#include <uvasync/task.hpp>

#include "server.hpp"

namespace servers {

/// HTTP/1.1 on `server_base`, parsed by nodejs/http-parser.
///
/// `GET /` (and `HEAD /`) get `200` with the 13-byte body `Hello, World!`; other paths `404`;
/// other methods `405`; a malformed request `400` and a request whose request line and headers
/// exceed `max_header_bytes` `431`, both followed by closing the connection. Keep-alive follows
/// HTTP/1.1 (`Connection: close`, HTTP/1.0 without `keep-alive`). Pipelined requests are
/// answered in order, and the answers to the requests of one read go out in one write.
///
/// The hot path allocates nothing per request: one read into a per-connection buffer, the
/// parser, responses appended to a per-connection string reused across requests, one write.
/// The connection's one timeout scope is re-armed between the idle and the request timeout.
class http_server final : public server_base {
public:
    explicit http_server(server_options options = {})
        : server_base(options) {}

private:
    uvasync::task<void> handle(uvasync::tcp_stream& stream, connection_slot& slot) override;
};

} // namespace servers
