// SPDX-License-Identifier: MIT
#include "http_server.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <http_parser.h>

namespace servers {

namespace {

using namespace std::string_view_literals;

// Fixed responses, appended piecewise: status and headers, an optional Connection line, the
// blank line, the body (not for HEAD).
constexpr std::string_view ok_head =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"sv;
constexpr std::string_view ok_body = "Hello, World!"sv;
constexpr std::string_view not_found_head =
    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"sv;
constexpr std::string_view not_found_body = "Not Found\n"sv;
constexpr std::string_view not_allowed_head =
    "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\n"
    "Content-Length: 19\r\n"sv;
constexpr std::string_view not_allowed_body = "Method Not Allowed\n"sv;
constexpr std::string_view bad_request =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nBad Request\n"sv;
constexpr std::string_view too_large =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
    "Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n"sv;
constexpr std::string_view close_line = "Connection: close\r\n"sv;
constexpr std::string_view keep_alive_line = "Connection: keep-alive\r\n"sv;
constexpr std::string_view end_of_head = "\r\n"sv;

// Per header line, what the callbacks do not see: ": " and CRLF.
constexpr std::size_t header_line_overhead = 4;

constexpr std::size_t read_buffer_size = 16384;

/// Everything one connection keeps across requests. It lives in the handler's frame, so the
/// buffers are allocated once per connection.
struct http_connection {
    explicit http_connection(const server_options& o, bool draining_now)
        : max_header_bytes(o.max_header_bytes)
        , draining(draining_now) {
        http_parser_init(&parser, HTTP_REQUEST);
        parser.data = this;
        out.reserve(4096);
    }

    http_parser parser{};
    std::array<char, read_buffer_size> in{};
    std::string out; // the responses of one read, written at once
    std::size_t max_header_bytes;
    std::size_t header_bytes = 0; // of the current request, across reads
    std::size_t url_bytes = 0;
    std::uint64_t answered = 0; // responses appended since the last count
    bool draining;              // answer with Connection: close, then stop
    bool in_message = false;    // a request began and is not complete
    bool began = false;         // the request in progress began in the current read
    bool url_is_root = false;
    bool last_was_value = true;
    bool header_overflow = false;
    bool out_of_memory = false;
    bool close_after = false;

    int count_header(std::size_t n) noexcept {
        header_bytes += n;
        if (header_bytes > max_header_bytes) {
            header_overflow = true;
            return 1; // stops the parser
        }
        return 0;
    }

    void answer(http_parser* p) {
        const bool keep = http_should_keep_alive(p) != 0 && !draining && p->upgrade == 0;
        const auto method = static_cast<http_method>(p->method);
        std::string_view head;
        std::string_view body;
        if (method != HTTP_GET && method != HTTP_HEAD) {
            head = not_allowed_head;
            body = not_allowed_body;
        } else if (!url_is_root) {
            head = not_found_head;
            body = not_found_body;
        } else {
            head = ok_head;
            body = ok_body;
        }
        out.append(head);
        if (!keep) {
            out.append(close_line);
        } else if (p->http_major == 1 && p->http_minor == 0) {
            out.append(keep_alive_line); // HTTP/1.0 keeps alive only when told so
        }
        out.append(end_of_head);
        if (method != HTTP_HEAD) {
            out.append(body);
        }
        ++answered;
        if (!keep) {
            close_after = true;
            http_parser_pause(p, 1); // later pipelined requests are not answered
        }
    }
};

http_connection& conn(http_parser* p) noexcept {
    return *static_cast<http_connection*>(p->data);
}

int on_message_begin(http_parser* p) noexcept {
    http_connection& c = conn(p);
    c.in_message = true;
    c.began = true;
    c.header_bytes = 0;
    c.url_bytes = 0;
    c.url_is_root = false;
    c.last_was_value = true;
    return 0;
}

int on_url(http_parser* p, const char* at, std::size_t n) noexcept {
    http_connection& c = conn(p);
    // Exactly "/" (the URL may arrive in pieces).
    c.url_is_root = c.url_bytes == 0 && n == 1 && at[0] == '/';
    c.url_bytes += n;
    return c.count_header(n);
}

int on_header_field(http_parser* p, const char* /*at*/, std::size_t n) noexcept {
    http_connection& c = conn(p);
    std::size_t add = n;
    if (c.last_was_value) {
        add += header_line_overhead; // a new header line starts
        c.last_was_value = false;
    }
    return c.count_header(add);
}

int on_header_value(http_parser* p, const char* /*at*/, std::size_t n) noexcept {
    http_connection& c = conn(p);
    c.last_was_value = true;
    return c.count_header(n);
}

int on_message_complete(http_parser* p) noexcept {
    http_connection& c = conn(p);
    c.in_message = false;
    c.began = false;
    try {
        c.answer(p);
    } catch (...) { // std::bad_alloc: never through the C parser
        c.out_of_memory = true;
        return 1;
    }
    return 0;
}

const http_parser_settings& parser_settings() noexcept {
    static const http_parser_settings settings = [] {
        http_parser_settings s{};
        http_parser_settings_init(&s);
        s.on_message_begin = &on_message_begin;
        s.on_url = &on_url;
        s.on_header_field = &on_header_field;
        s.on_header_value = &on_header_value;
        s.on_message_complete = &on_message_complete;
        return s;
    }();
    return settings;
}

} // namespace

uvasync::task<void> http_server::handle(uvasync::tcp_stream& stream, connection_slot& slot) {
    const server_options& opts = options();
    http_connection c(opts, slot.draining());
    const http_parser_settings& settings = parser_settings();

    for (;;) {
        if (!c.in_message) {
            if (slot.draining()) {
                break; // shutdown: nothing started on this connection
            }
            slot.set_idle(true);
        }
        const std::size_t n = co_await stream.read_some(std::span<char>(c.in));
        if (n == 0) { // EOF
            if (c.in_message) {
                ++stats_.incomplete;
            }
            break;
        }
        if (slot.idle()) { // the first byte of a request: its timeout starts now
            slot.set_idle(false);
            slot.rearm(opts.request_timeout);
        }

        c.began = false;
        c.draining = slot.draining();
        http_parser_execute(&c.parser, &settings, c.in.data(), n);
        const auto err = static_cast<http_errno>(c.parser.http_errno);
        if (c.out_of_memory) {
            throw std::bad_alloc();
        }
        if (err != HPE_OK && err != HPE_PAUSED) {
            // After the answers to the requests before it, in order.
            c.out.append(c.header_overflow || err == HPE_HEADER_OVERFLOW ? too_large : bad_request);
            c.close_after = true;
            ++stats_.rejected;
        } else if (c.parser.upgrade != 0) {
            c.close_after = true; // no upgrades or CONNECT tunnels here
        }
        stats_.requests += c.answered;
        c.answered = 0;

        if (!c.out.empty()) {
            co_await stream.write(std::span<const char>(c.out.data(), c.out.size()));
            c.out.clear(); // keeps the capacity for the next requests
        }
        if (c.close_after) {
            break;
        }
        if (!c.in_message) {
            slot.set_idle(true);
            slot.rearm(opts.idle_timeout);
        } else if (c.began) {
            slot.rearm(opts.request_timeout); // a pipelined request began in this read
        }
    }

    if (c.close_after) {
        // Lingering close: half-close, then read what the client still sends until it closes,
        // so the kernel does not answer unread data with a reset that could destroy the
        // response on the client's side. Bounded by the shorter of the two timeouts; an
        // expiry here counts as an idle timeout.
        slot.set_idle(true);
        slot.rearm(std::min(opts.idle_timeout, opts.request_timeout));
        try {
            co_await stream.shutdown();
            for (;;) {
                const std::size_t m = co_await stream.read_some(std::span<char>(c.in));
                if (m == 0) {
                    break;
                }
            }
        } catch (const std::system_error&) {
            // The client reset the connection: it is gone either way.
        }
    }
}

} // namespace servers
