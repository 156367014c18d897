// SPDX-License-Identifier: MIT
// A line echo server (docs/servers.md).
#pragma once

#include <uvasync/io/tcp.hpp>
#include <uvasync/task.hpp>

#include "server.hpp"

namespace servers {

/// Echoes every line (bytes up to and including `\n`) back to its sender, on `server_base`.
///
/// A line is this server's request: the request timeout runs from its first byte until it has
/// been written back; between lines the idle timeout applies. The complete lines of one read
/// go back in one write. A line longer than `max_line_bytes` closes the connection (counted as
/// rejected); bytes after the last `\n` when the client closes are dropped (counted as
/// incomplete). One buffer per connection; nothing is allocated per line.
class echo_server final : public server_base {
public:
    explicit echo_server(server_options options = {})
        : server_base(options) {}

private:
    uvasync::task<void> handle(uvasync::tcp_stream& stream, connection_slot& slot) override;
};

} // namespace servers
