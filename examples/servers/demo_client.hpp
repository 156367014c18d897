// SPDX-License-Identifier: MIT
// A small client for the --demo runs of the server examples.
#pragma once

#include <cstdio>
#include <string>
#include <system_error>

#include <uvasync/io/tcp.hpp>
#include <uvasync/task.hpp>

namespace servers {

/// Reads until the peer closes (a reset counts as closed) and returns everything read.
inline uvasync::task<std::string> read_to_end(uvasync::tcp_stream& s) {
    std::string all;
    char buf[4096];
    try {
        for (;;) {
            const std::size_t n = co_await s.read_some(std::span<char>(buf));
            if (n == 0) {
                break;
            }
            all.append(buf, n);
        }
    } catch (const std::system_error&) {
        // ECONNRESET: what arrived before is kept
    }
    co_return all;
}

/// Prints `text` with CR and LF made visible, indented, one line per LF.
inline void print_exchange(const char* what, const std::string& text) {
    std::printf("  %s:\n    ", what);
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char ch = text[i];
        if (ch == '\r') {
            std::printf("\\r");
        } else if (ch == '\n') {
            std::printf(i + 1 < text.size() ? "\\n\n    " : "\\n");
        } else {
            std::putchar(ch);
        }
    }
    std::printf("\n");
    std::fflush(stdout);
}

} // namespace servers
