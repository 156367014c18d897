// SPDX-License-Identifier: MIT
// The demo addon: uvasync tasks on Node's loop as Promises, cancellable with an AbortSignal.
//
//   const u = require('<build dir>/bindings/node/uvasync_demo.node');
//   await u.sleep(100, { signal, timeout: 50 });
//
// Every function returns a Promise and takes an optional last argument `{ signal, timeout }`.
// docs/node.md explains each piece; its code examples are taken from this file.
#include <cstdint>
#include <string>
#include <vector>

#include <uvasync/io.hpp>
#include <uvasync/node.hpp>

#include <fcntl.h>

namespace {

namespace node = uvasync::node;
namespace js = uvasync::node::js;
using uvasync::task;

// [sleep]
// u.sleep(ms, opts) -> undefined, after `ms` on the loop clock.
task<void> sleep_for(double ms) {
    co_await uvasync::sleep(std::chrono::duration<double, std::milli>(ms));
}

napi_value sleep_js(napi_env env, napi_callback_info info) {
    return node::guard(env, [&] {
        const js::arguments<2> args(env, info);
        double ms = 0;
        try {
            ms = js::to_number_in(env, args[0], "ms", 0, 4294967295.0);
        } catch (...) {
            return node::reject_current(env); // bad input: a rejected Promise, not a throw
        }
        return node::promise_from(env, sleep_for(ms), args[1]);
    });
}

// [sleep]

// u.resolve(host, opts) -> ['127.0.0.1', '::1', ...] (getaddrinfo on the threadpool).
task<std::vector<std::string>> resolve_host(std::string host) {
    std::vector<std::string> out;
    try {
        auto lookup = uvasync::resolve(host, "");
        uvasync::address_list list = co_await std::move(lookup);
        for (const uvasync::socket_address& a : list) {
            out.push_back(a.ip());
        }
    } catch (const std::system_error& e) {
        if (e.code().category() != uvasync::uv_category()) {
            throw;
        }
        throw node::uv_error(e, "getaddrinfo", host);
    }
    co_return out;
}

napi_value to_array(napi_env env, std::vector<std::string>&& items) {
    napi_value array = nullptr;
    node::check(env, napi_create_array_with_length(env, items.size(), &array),
                "napi_create_array_with_length");
    for (std::size_t i = 0; i < items.size(); ++i) {
        node::check(
            env,
            napi_set_element(env, array, static_cast<std::uint32_t>(i), js::string(env, items[i])),
            "napi_set_element");
    }
    return array;
}

napi_value resolve_js(napi_env env, napi_callback_info info) {
    return node::guard(env, [&] {
        const js::arguments<2> args(env, info);
        std::string host;
        try {
            host = js::to_string(env, args[0], "host");
        } catch (...) {
            return node::reject_current(env);
        }
        return node::promise_from(env, resolve_host(std::move(host)), &to_array, args[1]);
    });
}

// [readFile]
// u.readFile(path, opts) -> Buffer. Errors carry Node's shape: code 'ENOENT', errno, syscall
// 'open', path.
task<std::string> read_whole_file(std::string path) {
    uvasync::fs::file f;
    try {
        f = co_await uvasync::fs::open(path, O_RDONLY);
    } catch (const std::system_error& e) {
        throw node::uv_error(e, "open", path);
    }
    std::string out;
    std::vector<char> chunk(64 * 1024);
    for (;;) {
        std::size_t n = 0;
        try {
            n = co_await f.read(chunk);
        } catch (const std::system_error& e) {
            throw node::uv_error(e, "read", path);
        }
        if (n == 0) {
            break;
        }
        out.append(chunk.data(), n);
    }
    co_await f.close();
    co_return out;
}

napi_value read_file_js(napi_env env, napi_callback_info info) {
    return node::guard(env, [&] {
        const js::arguments<2> args(env, info);
        std::string path;
        try {
            path = js::to_string(env, args[0], "path");
        } catch (...) {
            return node::reject_current(env);
        }
        auto to_buffer = [](napi_env e, std::string&& bytes) { return js::buffer(e, bytes); };
        return node::promise_from(env, read_whole_file(std::move(path)), to_buffer, args[1]);
    });
}

// [readFile]

// [cpu]
// u.cpu(iterations, opts) -> number: a CPU loop on the threadpool. It polls its token, so an
// abort stops it early; the checkpoint afterwards turns that into the rejection.
task<double> spin(double iterations) {
    const auto n = static_cast<std::uint64_t>(iterations);
    auto work = [n](const uvasync::cancel_token& token) {
        std::uint64_t x = 0x9e3779b97f4a7c15ULL;
        for (std::uint64_t i = 0; i < n; ++i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if ((i & 0xffff) == 0 && token.cancel_requested()) {
                break;
            }
        }
        return static_cast<double>(x % 1000000);
    };
    const double result = co_await uvasync::to_thread(std::move(work));
    co_await uvasync::checkpoint();
    co_return result;
}

// [cpu]

napi_value cpu_js(napi_env env, napi_callback_info info) {
    return node::guard(env, [&] {
        const js::arguments<2> args(env, info);
        double iterations = 0;
        try {
            iterations = js::to_number_in(env, args[0], "iterations", 0, 9007199254740991.0);
        } catch (...) {
            return node::reject_current(env);
        }
        return node::promise_from(env, spin(iterations), &js::number, args[1]);
    });
}

// u.fetchLine(host, port, line, opts) -> string: connects over TCP, writes `line` and a
// newline, reads one line back (without its newline).
task<std::string> fetch_line(std::string host, std::uint16_t port, std::string line) {
    auto lookup = uvasync::resolve(host, std::to_string(port));
    uvasync::address_list list = co_await std::move(lookup);
    if (list.empty()) {
        throw node::uv_error(UV_EAI_NONAME, "getaddrinfo", host);
    }
    // Failures of connect, write and read are the runtime's std::system_error; the layer
    // converts them (code 'ECONNREFUSED', syscall 'connect').
    auto connecting = uvasync::tcp_stream::connect(*list.begin());
    uvasync::tcp_stream s = co_await std::move(connecting);
    co_await s.write(line + "\n");
    auto reading = s.read_until("\n", 64 * 1024);
    std::string reply = co_await std::move(reading);
    co_await s.close();
    if (!reply.empty() && reply.back() == '\n') {
        reply.pop_back();
    }
    co_return reply;
}

napi_value fetch_line_js(napi_env env, napi_callback_info info) {
    return node::guard(env, [&] {
        const js::arguments<4> args(env, info);
        std::string host;
        double port = 0;
        std::string line;
        try {
            host = js::to_string(env, args[0], "host");
            port = js::to_number_in(env, args[1], "port", 1, 65535);
            line = js::to_string(env, args[2], "line");
        } catch (...) {
            return node::reject_current(env);
        }
        auto to_string = [](napi_env e, std::string&& s) { return js::string(e, s); };
        return node::promise_from(
            env, fetch_line(std::move(host), static_cast<std::uint16_t>(port), std::move(line)),
            to_string, args[3]);
    });
}

// u.activeTasks() -> number of unfinished tasks of this environment's runtime.
napi_value active_tasks_js(napi_env env, napi_callback_info /*info*/) {
    return node::guard(env, [&] {
        return js::number(env, static_cast<double>(node::environment::of(env).active_tasks()));
    });
}

// [init]
napi_value init(napi_env env, napi_value exports) {
    return node::guard(env, [&] {
        node::check_host(env); // a clear error on a libuv mismatch or a host that is not Node
        const napi_property_descriptor functions[] = {
            {"sleep", nullptr, sleep_js, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
            {"resolve", nullptr, resolve_js, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
            {"readFile", nullptr, read_file_js, nullptr, nullptr, nullptr, napi_enumerable,
             nullptr},
            {"cpu", nullptr, cpu_js, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
            {"fetchLine", nullptr, fetch_line_js, nullptr, nullptr, nullptr, napi_enumerable,
             nullptr},
            {"activeTasks", nullptr, active_tasks_js, nullptr, nullptr, nullptr, napi_enumerable,
             nullptr},
        };
        node::check(env, napi_define_properties(env, exports, std::size(functions), functions),
                    "napi_define_properties");
        return exports;
    });
}

// [init]

} // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
