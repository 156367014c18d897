// SPDX-License-Identifier: MIT
#include "echo_server.hpp"

#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

namespace servers {

namespace {

constexpr std::size_t read_chunk = 16384;

} // namespace

uvasync::task<void> echo_server::handle(uvasync::tcp_stream& stream, connection_slot& slot) {
    const server_options& opts = options();
    // An incomplete line (at most max_line_bytes) at the front, room for one read after it.
    std::vector<char> buf(opts.max_line_bytes + read_chunk);
    std::size_t used = 0;

    for (;;) {
        if (used == 0) {
            if (slot.draining()) {
                break; // shutdown: no line started
            }
            slot.set_idle(true);
        }
        const std::size_t n =
            co_await stream.read_some(std::span<char>(buf.data() + used, buf.size() - used));
        if (n == 0) {
            if (used != 0) {
                ++stats_.incomplete;
            }
            break;
        }
        if (slot.idle()) { // a line starts: its timeout starts now
            slot.set_idle(false);
            slot.rearm(opts.request_timeout);
        }
        const std::size_t total = used + n;
        const char* const first_new = buf.data() + used;
        const auto* last_nl = static_cast<const char*>(memrchr(first_new, '\n', n));
        if (last_nl == nullptr) {
            used = total;
            if (used > opts.max_line_bytes) {
                ++stats_.rejected;
                break;
            }
            continue; // the line goes on; its deadline stays
        }
        const auto lines_end = static_cast<std::size_t>(last_nl - buf.data()) + 1;
        stats_.requests +=
            static_cast<std::uint64_t>(std::count(buf.data() + used, buf.data() + lines_end, '\n'));
        co_await stream.write(std::span<const char>(buf.data(), lines_end));
        used = total - lines_end;
        if (used != 0) {
            std::memmove(buf.data(), buf.data() + lines_end, used);
            slot.rearm(opts.request_timeout); // the next line began in this read
        } else {
            slot.set_idle(true);
            slot.rearm(opts.idle_timeout);
        }
    }
}

} // namespace servers
