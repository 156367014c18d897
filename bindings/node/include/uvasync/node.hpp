// SPDX-License-Identifier: MIT
// uvasync for Node-API addons: C++20 coroutines with uvasync's timeouts and cancellation, run
// on Node's own libuv loop, handed to JavaScript as Promises that an AbortSignal cancels.
//
// Header-only. Compile the addon and the runtime against Node's headers (node_api.h and the
// uv.h that ships with Node) and link no libuv: the uv_* symbols come from the node executable.
// docs/node.md walks through writing an addon with it.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <node_api.h>
#include <uv.h>
#include <uvasync/io/error.hpp>
#include <uvasync/uvasync.hpp>

#include <dlfcn.h>

/// The libuv version the addon was compiled against; the load check compares the host's with it.
#ifndef UVASYNC_NODE_EXPECTED_UV_HEX
#define UVASYNC_NODE_EXPECTED_UV_HEX UV_VERSION_HEX
#endif

namespace uvasync::node {

// ---------------------------------------------------------------------------------------------
// Errors that reach JavaScript

/// An error for JavaScript with a Node-style `code`: thrown in C++ (in a task or at the
/// boundary), it becomes a `TypeError`, `RangeError` or `Error` with that `code`.
class js_error : public std::runtime_error {
public:
    enum class kind : std::uint8_t { error, type_error, range_error };

    js_error(kind k, std::string code, const std::string& message)
        : std::runtime_error(message)
        , kind_(k)
        , code_(std::move(code)) {}

    [[nodiscard]] kind type() const noexcept { return kind_; }

    [[nodiscard]] const std::string& code() const noexcept { return code_; }

private:
    kind kind_;
    std::string code_;
};

/// `TypeError` with `code` (Node's `ERR_INVALID_ARG_TYPE` style) for a bad argument.
inline js_error type_error(std::string code, const std::string& message) {
    return js_error(js_error::kind::type_error, std::move(code), message);
}

/// `RangeError` with `code` (`ERR_OUT_OF_RANGE`) for an argument outside its range.
inline js_error range_error(std::string code, const std::string& message) {
    return js_error(js_error::kind::range_error, std::move(code), message);
}

/// A libuv failure with the name of the system call and, optionally, the path: it becomes an
/// `Error` shaped like Node's own (`code` = `uv_err_name`, `errno`, `syscall`, `path`,
/// message "ENOENT: no such file or directory, open '/x'").
///
/// Any other `std::system_error` of the uv category is converted the same way, with the
/// system call taken from the runtime's message ("uvasync::fs::open" gives "open").
class uv_error : public std::system_error {
public:
    uv_error(int status, std::string syscall, std::string path = {})
        : std::system_error(uvasync::uv_error_code(status), syscall)
        , syscall_(std::move(syscall))
        , path_(std::move(path)) {}

    /// Names the system call behind a runtime error (`e.code()` must be in the uv category).
    uv_error(const std::system_error& e, std::string syscall, std::string path = {})
        : uv_error(e.code().value(), std::move(syscall), std::move(path)) {}

    [[nodiscard]] const std::string& syscall() const noexcept { return syscall_; }

    [[nodiscard]] const std::string& path() const noexcept { return path_; }

private:
    std::string syscall_;
    std::string path_;
};

namespace detail {

/// A Node-API call failed. If it left a JavaScript exception pending, the boundary that
/// catches this takes that exception as the error.
class napi_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline void check(napi_env env, napi_status status, const char* what) {
    if (status == napi_ok) {
        return;
    }
    const napi_extended_error_info* info = nullptr;
    std::string text = std::string("uvasync::node: ") + what + " failed";
    if (napi_get_last_error_info(env, &info) == napi_ok && info != nullptr &&
        info->error_message != nullptr) {
        text += std::string(": ") + info->error_message;
    }
    throw napi_failure(text);
}

/// The system call named by a runtime error message: the first word, without its namespaces
/// and without a trailing ':' ("uvasync::fs::open" -> "open",
/// "tcp_stream::connect 127.0.0.1:1: connection refused" -> "connect").
inline std::string syscall_of(std::string_view what) {
    what = what.substr(0, what.find(' '));
    while (!what.empty() && what.back() == ':') {
        what.remove_suffix(1);
    }
    if (const std::size_t k = what.rfind("::"); k != std::string_view::npos) {
        what = what.substr(k + 2);
    }
    return std::string(what);
}

inline napi_value make_string(napi_env env, std::string_view s) {
    napi_value v = nullptr;
    check(env, napi_create_string_utf8(env, s.data(), s.size(), &v), "napi_create_string_utf8");
    return v;
}

inline void set_property(napi_env env, napi_value object, const char* name, napi_value value) {
    check(env, napi_set_named_property(env, object, name, value), "napi_set_named_property");
}

/// `new Error(message)` (or TypeError/RangeError) with `code`, and `name` when given.
inline napi_value make_error(napi_env env, js_error::kind k, std::string_view code,
                             std::string_view message, const char* name = nullptr) {
    napi_value c = code.empty() ? nullptr : make_string(env, code);
    napi_value m = make_string(env, message);
    napi_value e = nullptr;
    switch (k) {
    case js_error::kind::type_error:
        check(env, napi_create_type_error(env, c, m, &e), "napi_create_type_error");
        break;
    case js_error::kind::range_error:
        check(env, napi_create_range_error(env, c, m, &e), "napi_create_range_error");
        break;
    case js_error::kind::error:
        check(env, napi_create_error(env, c, m, &e), "napi_create_error");
        break;
    }
    if (name != nullptr) {
        set_property(env, e, "name", make_string(env, name));
    }
    return e;
}

inline napi_value make_uv_error(napi_env env, int status, const std::string& syscall,
                                const std::string& path) {
    const char* code = uv_err_name(status);
    std::string message = std::string(code) + ": " + uv_strerror(status) + ", " + syscall;
    if (!path.empty()) {
        message += " '" + path + "'";
    }
    napi_value e = make_error(env, js_error::kind::error, code, message);
    napi_value n = nullptr;
    check(env, napi_create_int32(env, status, &n), "napi_create_int32");
    set_property(env, e, "errno", n);
    set_property(env, e, "syscall", make_string(env, syscall));
    if (!path.empty()) {
        set_property(env, e, "path", make_string(env, path));
    }
    return e;
}

/// The `Error` named `AbortError` used when a signal has no reason.
inline napi_value make_abort_error(napi_env env) {
    return make_error(env, js_error::kind::error, "ABORT_ERR", "The operation was aborted",
                      "AbortError");
}

/// The `Error` named `TimeoutError` of an expired `{ timeout }`.
inline napi_value make_timeout_error(napi_env env, double ms) {
    std::string text =
        "The operation timed out after " + std::to_string(static_cast<std::int64_t>(ms)) + " ms";
    return make_error(env, js_error::kind::error, "ETIMEDOUT", text, "TimeoutError");
}

/// Converts any C++ exception into a JavaScript value. Never throws: if even that fails, the
/// result is null and the caller has nothing to reject with.
inline napi_value error_value(napi_env env, const std::exception_ptr& error) noexcept {
    try {
        try {
            std::rethrow_exception(error);
        } catch (const napi_failure& e) {
            bool pending = false;
            napi_value ex = nullptr;
            if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
                napi_get_and_clear_last_exception(env, &ex) == napi_ok) {
                return ex;
            }
            return make_error(env, js_error::kind::error, "ERR_NAPI", e.what());
        } catch (const js_error& e) {
            return make_error(env, e.type(), e.code(), e.what());
        } catch (const uv_error& e) {
            return make_uv_error(env, e.code().value(), e.syscall(), e.path());
        } catch (const std::system_error& e) {
            if (e.code().category() == uvasync::uv_category()) {
                return make_uv_error(env, e.code().value(), syscall_of(e.what()), {});
            }
            return make_error(env, js_error::kind::error, {}, e.what());
        } catch (const timeout_error& e) {
            return make_error(env, js_error::kind::error, "ETIMEDOUT", e.what(), "TimeoutError");
        } catch (const cancelled_error&) {
            return make_abort_error(env);
        } catch (const std::invalid_argument& e) {
            return make_error(env, js_error::kind::type_error, "ERR_INVALID_ARG_VALUE", e.what());
        } catch (const std::bad_alloc&) {
            return make_error(env, js_error::kind::range_error, "ERR_MEMORY_ALLOCATION_FAILED",
                              "out of memory");
        } catch (const std::exception& e) {
            return make_error(env, js_error::kind::error, {}, e.what());
        } catch (...) {
            return make_error(env, js_error::kind::error, {}, "unknown C++ exception");
        }
    } catch (...) {
        return nullptr;
    }
}

/// Throws the current C++ exception into JavaScript (at a Node-API callback's boundary).
inline void throw_to_js(napi_env env, const std::exception_ptr& error) noexcept {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        try {
            std::rethrow_exception(error);
        } catch (const napi_failure&) {
            return; // JavaScript threw; let that exception propagate
        } catch (...) {
            napi_value ignored = nullptr;
            (void)napi_get_and_clear_last_exception(env, &ignored);
        }
    }
    if (napi_value v = error_value(env, error); v != nullptr) {
        (void)napi_throw(env, v);
    }
}

/// Reports an exception thrown by JavaScript we called from outside any JavaScript frame (a
/// listener we removed, a promise settlement) the way Node reports an uncaught one.
inline void report_pending(napi_env env) noexcept {
    bool pending = false;
    napi_value ex = nullptr;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
        napi_get_and_clear_last_exception(env, &ex) == napi_ok) {
        (void)napi_fatal_exception(env, ex);
    }
}

} // namespace detail

/// Throws when a Node-API call did not return `napi_ok`; `guard` and `promise_from` turn that
/// into the JavaScript exception the call left pending, or an `Error` naming `what`.
using detail::check;

/// Runs `f()` at a Node-API callback's boundary: returns its value, or, if it throws, throws
/// the matching JavaScript error and returns null. No C++ exception crosses into Node.
template <class F>
napi_value guard(napi_env env, F&& f) noexcept {
    try {
        return std::forward<F>(f)();
    } catch (...) {
        detail::throw_to_js(env, std::current_exception());
        return nullptr;
    }
}

/// Inside a `catch` block: a Promise rejected with the exception being handled, converted as
/// `promise_from` converts a task's failure (for argument checks: bad input rejects, it does
/// not throw). Returns null only if even that failed.
inline napi_value reject_current(napi_env env) noexcept {
    napi_value reason = detail::error_value(env, std::current_exception());
    if (reason == nullptr) {
        return nullptr;
    }
    napi_deferred d = nullptr;
    napi_value promise = nullptr;
    if (napi_create_promise(env, &d, &promise) != napi_ok ||
        napi_reject_deferred(env, d, reason) != napi_ok) {
        return nullptr;
    }
    return promise;
}

// ---------------------------------------------------------------------------------------------
// Values

/// Small conversions used by addons (all throw on a Node-API failure; `guard` converts that).
namespace js {

inline napi_value undefined(napi_env env) {
    napi_value v = nullptr;
    detail::check(env, napi_get_undefined(env, &v), "napi_get_undefined");
    return v;
}

inline napi_value number(napi_env env, double d) {
    napi_value v = nullptr;
    detail::check(env, napi_create_double(env, d, &v), "napi_create_double");
    return v;
}

inline napi_value string(napi_env env, std::string_view s) {
    return detail::make_string(env, s);
}

/// A `Buffer` holding a copy of `bytes`.
inline napi_value buffer(napi_env env, std::string_view bytes) {
    napi_value v = nullptr;
    void* data = nullptr;
    detail::check(env, napi_create_buffer_copy(env, bytes.size(), bytes.data(), &data, &v),
                  "napi_create_buffer_copy");
    return v;
}

inline napi_valuetype type_of(napi_env env, napi_value v) {
    napi_valuetype t = napi_undefined;
    if (v != nullptr) {
        detail::check(env, napi_typeof(env, v, &t), "napi_typeof");
    }
    return t;
}

inline napi_value property(napi_env env, napi_value object, const char* name) {
    napi_value v = nullptr;
    detail::check(env, napi_get_named_property(env, object, name, &v), "napi_get_named_property");
    return v;
}

/// The arguments of a call: exactly `N` slots, missing ones `undefined`.
template <std::size_t N>
struct arguments {
    napi_value argv[N > 0 ? N : 1]{};
    std::size_t argc = N;

    arguments(napi_env env, napi_callback_info info) {
        detail::check(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr),
                      "napi_get_cb_info");
        for (std::size_t i = argc; i < N; ++i) {
            argv[i] = undefined(env);
        }
    }

    napi_value operator[](std::size_t i) const noexcept { return argv[i]; }
};

/// A finite number, or `TypeError` `ERR_INVALID_ARG_TYPE` naming `name`.
inline double to_number(napi_env env, napi_value v, const char* name) {
    double d = 0;
    if (type_of(env, v) != napi_number) {
        throw type_error("ERR_INVALID_ARG_TYPE",
                         std::string("The \"") + name + "\" argument must be of type number");
    }
    detail::check(env, napi_get_value_double(env, v, &d), "napi_get_value_double");
    if (!std::isfinite(d)) {
        throw range_error("ERR_OUT_OF_RANGE",
                          std::string("The value of \"") + name + "\" must be a finite number");
    }
    return d;
}

/// A number in [lo, hi], or `RangeError` `ERR_OUT_OF_RANGE`.
inline double to_number_in(napi_env env, napi_value v, const char* name, double lo, double hi) {
    const double d = to_number(env, v, name);
    if (d < lo || d > hi) {
        const auto text = [](double x) {
            return x == std::floor(x) && std::fabs(x) < 9.1e15
                       ? std::to_string(static_cast<std::int64_t>(x))
                       : std::to_string(x);
        };
        throw range_error("ERR_OUT_OF_RANGE", std::string("The value of \"") + name +
                                                  "\" is out of range. It must be >= " + text(lo) +
                                                  " and <= " + text(hi) + ". Received " + text(d));
    }
    return d;
}

/// A string (UTF-8), or `TypeError` `ERR_INVALID_ARG_TYPE` naming `name`.
inline std::string to_string(napi_env env, napi_value v, const char* name) {
    if (type_of(env, v) != napi_string) {
        throw type_error("ERR_INVALID_ARG_TYPE",
                         std::string("The \"") + name + "\" argument must be of type string");
    }
    std::size_t n = 0;
    detail::check(env, napi_get_value_string_utf8(env, v, nullptr, 0, &n),
                  "napi_get_value_string_utf8");
    std::string s(n, '\0');
    detail::check(env, napi_get_value_string_utf8(env, v, s.data(), n + 1, &n),
                  "napi_get_value_string_utf8");
    s.resize(n);
    return s;
}

} // namespace js

// ---------------------------------------------------------------------------------------------
// The host check

/// Checks, once at load, that the host is Node.js with the libuv this addon was compiled
/// against: `uv_version()` must exist in the process (Bun and Deno implement Node-API but have
/// no libuv), have the same major version and at least the minor version of the headers, and
/// `napi_get_uv_event_loop` must return a loop. Throws `js_error` (code
/// `ERR_UVASYNC_HOST`) otherwise; call it from the module's init inside `guard`.
inline void check_host(napi_env env) {
    using version_fn = unsigned (*)();
    // Looked up instead of called directly: on a host without libuv the direct call would be
    // an unresolved symbol that kills the process instead of throwing.
    void* sym = dlsym(RTLD_DEFAULT, "uv_version");
    const unsigned expected = UVASYNC_NODE_EXPECTED_UV_HEX;
    const auto text = [](unsigned hex) {
        return std::to_string(hex >> 16) + "." + std::to_string((hex >> 8) & 0xff) + "." +
               std::to_string(hex & 0xff);
    };
    if (sym == nullptr) {
        throw js_error(js_error::kind::error, "ERR_UVASYNC_HOST",
                       "uvasync: this host has no libuv (uv_version is missing); the addon needs "
                       "Node.js, not a Node-API emulation such as Bun's or Deno's");
    }
    unsigned actual = 0;
    // A data pointer to a function pointer: what dlsym's contract allows on POSIX.
    version_fn fn = nullptr;
    static_assert(sizeof(fn) == sizeof(sym));
    std::memcpy(&fn, &sym, sizeof(fn));
    actual = fn();
    if ((actual >> 16) != (expected >> 16) || ((actual >> 8) & 0xff) < ((expected >> 8) & 0xff)) {
        throw js_error(js_error::kind::error, "ERR_UVASYNC_HOST",
                       "uvasync: libuv version mismatch: the addon was compiled against libuv " +
                           text(expected) + " but the host runs libuv " + text(actual) +
                           "; rebuild it against this Node's headers");
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
        throw js_error(js_error::kind::error, "ERR_UVASYNC_HOST",
                       "uvasync: napi_get_uv_event_loop returned no loop; the host is not Node.js");
    }
}

// ---------------------------------------------------------------------------------------------
// The environment's runtime

class environment;

namespace detail {

template <class T>
struct listener_cell;

/// The state of one `promise_from` call while its task runs. Owned by the environment's list
/// of calls; freed after it settled, or at teardown without touching JavaScript.
class call_base {
public:
    call_base(const call_base&) = delete;
    call_base& operator=(const call_base&) = delete;
    call_base(call_base&&) = delete;
    call_base& operator=(call_base&&) = delete;
    virtual ~call_base() = default;

    /// Settles the Promise (loop thread, outside any task, JavaScript allowed).
    void settle(napi_env env) noexcept;

    /// Lets go of every JavaScript reference without calling JavaScript (teardown).
    void discard(napi_env env) noexcept;

    /// The abort listener ran.
    void abort(napi_env env) noexcept;

protected:
    call_base() = default;

    /// The converted value (when the task returned one).
    virtual napi_value value(napi_env env) = 0;

public:
    call_base* prev = nullptr; // the environment's list of calls
    call_base* next = nullptr;
    environment* owner = nullptr;
    napi_ref resolve = nullptr;
    napi_ref reject = nullptr;
    napi_async_context async = nullptr;
    napi_ref signal = nullptr;                // the AbortSignal, while listened to
    napi_ref listener = nullptr;              // our 'abort' listener function, while registered
    listener_cell<call_base>* cell = nullptr; // our share of the abort listener's cell
    napi_ref reason = nullptr;                // signal.reason at abort time
    uv_loop_t* loop = nullptr;
    bool holds_loop = false; // keeps Node's loop alive until settled
    bool aborted = false;
    double timeout_ms = -1;   // < 0: no timeout
    bool timed_out = false;   // our own timeout scope converted the cancellation
    bool has_value = false;   // the task returned normally
    std::exception_ptr error; // the task failed (other than a cancellation)
    task_handle<void> handle;
};

/// A parameter of the call's coroutine: destroyed with its frame, whether the body ran to the
/// end or was destroyed unstarted (a task cancelled before its first step never runs), so it
/// is the one place that always learns that the task has completely finished.
class finished_notice {
public:
    explicit finished_notice(call_base* c) noexcept
        : c_(c) {}

    finished_notice(finished_notice&& other) noexcept
        : c_(std::exchange(other.c_, nullptr)) {}

    finished_notice(const finished_notice&) = delete;
    finished_notice& operator=(const finished_notice&) = delete;
    finished_notice& operator=(finished_notice&&) = delete;

    ~finished_notice();

private:
    call_base* c_;
};

/// The data of a listener function we hand to JavaScript: the function may outlive what it
/// points to (an abort listener the signal still holds; any function at environment
/// teardown, whose finalizers run in an order of Node's choosing), so it reaches its target
/// through this cell. Two owners: the function's finalizer and the target; the last frees it.
template <class T>
struct listener_cell {
    T* target = nullptr;
    int owners = 2;

    /// Gives up one owner's share (loop thread only, like every Node-API call).
    static void drop(listener_cell* c) noexcept {
        if (--c->owners == 0) {
            delete c;
        }
    }

    /// A function calling `cb` with this cell as its data, owned by the function's finalizer
    /// and by the caller (who must `drop` it).
    static napi_value make_function(napi_env env, const char* name, napi_callback cb,
                                    listener_cell*& out);
};

using abort_cell = listener_cell<call_base>;

/// What `promise_from` needs to run a task as a call.
template <class T, class ToJs>
class call final : public call_base {
public:
    explicit call(ToJs to_js)
        : to_js_(std::move(to_js)) {}

    std::optional<std::conditional_t<std::is_void_v<T>, unit, T>> result;

private:
    napi_value value(napi_env env) override {
        if constexpr (std::is_void_v<T>) {
            return to_js_(env);
        } else {
            return to_js_(env, std::move(*result));
        }
    }

    ToJs to_js_;
};

} // namespace detail

/// The uvasync runtime of one Node environment (the main thread or one worker thread).
///
/// Created on first use on the environment's own loop (`napi_get_uv_event_loop`), in borrowed
/// mode: Node keeps running its loop, and the runtime's handles keep it alive only while tasks
/// need them. Stored as the addon's instance data (`napi_set_instance_data`), so every
/// environment, and every addon using this header, has its own.
///
/// **Teardown:** when the environment stops (the process ends normally, a worker ends or is
/// terminated), an async cleanup hook shuts the runtime down: every task is cancelled and
/// waited for (requests running on the threadpool are waited for too), every handle is closed
/// and its close callback has run, and only then does the hook report that it is done.
/// Promises still pending then are never settled (JavaScript cannot run any more); their
/// references are released. Node calls the hook from its environment cleanup, outside
/// `uv_run`, which is where the runtime's shutdown may run the loop.
///
/// **Thread:** the environment's thread only.
class environment {
    using exit_cell = detail::listener_cell<environment>;

public:
    environment(const environment&) = delete;
    environment& operator=(const environment&) = delete;
    environment(environment&&) = delete;
    environment& operator=(environment&&) = delete;

    /// The environment of `env`, created (and registered as instance data) on first use.
    static environment& of(napi_env env) {
        void* data = nullptr;
        detail::check(env, napi_get_instance_data(env, &data), "napi_get_instance_data");
        if (data != nullptr) {
            return *static_cast<environment*>(data);
        }
        auto* self = new environment(env);
        if (const napi_status s = napi_set_instance_data(env, self, &finalize, nullptr);
            s != napi_ok) {
            delete self;
            detail::check(env, s, "napi_set_instance_data");
        }
        return *self;
    }

    /// The runtime, created on first use (which also registers the cleanup hook). Throws
    /// `invalid_state` once the environment is stopping.
    uvasync::runtime& runtime() {
        if (stopping_) {
            throw invalid_state("uvasync::node: the Node environment is shutting down");
        }
        if (!rt_) {
            uv_loop_t* loop = nullptr;
            detail::check(env_, napi_get_uv_event_loop(env_, &loop), "napi_get_uv_event_loop");
            auto rt = std::make_unique<uvasync::runtime>(loop);
            detail::check(env_, napi_add_async_cleanup_hook(env_, &on_cleanup, this, &hook_),
                          "napi_add_async_cleanup_hook");
            rt_ = std::move(rt);
            watch_process_exit();
        }
        return *rt_;
    }

    /// Unfinished tasks of this environment's runtime (every pending `promise_from` call is
    /// one; tasks the addon spawned itself count too). 0 before the runtime exists.
    [[nodiscard]] std::size_t active_tasks() const noexcept { return rt_ ? rt_->task_count() : 0; }

    /// True from the start of teardown: no JavaScript may run, no call may start.
    [[nodiscard]] bool stopping() const noexcept { return stopping_; }

    [[nodiscard]] napi_env env() const noexcept { return env_; }

    /// For `promise_from`: a pending Promise and its resolve/reject functions (references).
    napi_value make_promise(napi_ref& resolve, napi_ref& reject) {
        napi_value ctor = nullptr;
        napi_value executor = nullptr;
        detail::check(env_, napi_get_reference_value(env_, promise_ctor_, &ctor),
                      "napi_get_reference_value");
        detail::check(env_, napi_get_reference_value(env_, executor_, &executor),
                      "napi_get_reference_value");
        napi_value promise = nullptr;
        capture_resolve_ = capture_reject_ = nullptr;
        const napi_status s = napi_new_instance(env_, ctor, 1, &executor, &promise);
        resolve = std::exchange(capture_resolve_, nullptr);
        reject = std::exchange(capture_reject_, nullptr);
        if (s != napi_ok || resolve == nullptr || reject == nullptr) {
            release(resolve);
            release(reject);
            detail::check(env_, s == napi_ok ? napi_generic_failure : s, "new Promise");
        }
        return promise;
    }

    /// Keeps `c` until it is settled or discarded.
    void adopt(detail::call_base& c) noexcept {
        c.owner = this;
        c.prev = nullptr;
        c.next = calls_;
        if (calls_ != nullptr) {
            calls_->prev = &c;
        }
        calls_ = &c;
    }

    /// Called when the task of `c` has finished and its frame is gone (from inside the
    /// runtime): queues the settlement, which runs on the loop thread outside any task.
    void finished(detail::call_base* c) noexcept {
        try {
            if (rt_ && rt_->post([this, c] { complete(c); })) {
                return;
            }
        } catch (...) {
        }
        // Only when the runtime no longer takes posts (or memory ran out): settle at teardown.
    }

    void release(napi_ref& ref) noexcept {
        if (ref != nullptr) {
            (void)napi_delete_reference(env_, std::exchange(ref, nullptr));
        }
    }

private:
    explicit environment(napi_env env)
        : env_(env) {
        // Promises are made with `new Promise(executor)` rather than napi_create_promise: a
        // napi_deferred can only be freed by settling it, which is impossible once the
        // environment stops; resolve/reject references can always be deleted.
        napi_value global = nullptr;
        napi_value ctor = nullptr;
        napi_value executor = nullptr;
        try {
            detail::check(env, napi_get_global(env, &global), "napi_get_global");
            ctor = js::property(env, global, "Promise");
            detail::check(env, napi_create_reference(env, ctor, 1, &promise_ctor_),
                          "napi_create_reference");
            detail::check(env,
                          napi_create_function(env, "uvasyncExecutor", NAPI_AUTO_LENGTH,
                                               &on_executor, this, &executor),
                          "napi_create_function");
            detail::check(env, napi_create_reference(env, executor, 1, &executor_),
                          "napi_create_reference");
        } catch (...) {
            release(promise_ctor_);
            release(executor_);
            throw;
        }
    }

    ~environment() {
        if (rt_) { // the cleanup hook never ran: shut down here (outside uv_run as well)
            teardown();
        }
        if (exit_cell_ != nullptr) {
            exit_cell_->target = nullptr; // the listener function may outlive us
            exit_cell::drop(exit_cell_);
        }
        release(promise_ctor_);
        release(executor_);
    }

    /// `process.exit()` on the main thread runs no cleanup hook: Node shuts libuv's threadpool
    /// down, joining its threads, and exits. A `to_thread` function still running would make
    /// that wait forever, so every pending call is cancelled from a process 'exit' listener
    /// (work that polls its token then returns). Emitted on every exit path, also in workers.
    void watch_process_exit() {
        napi_value fn =
            exit_cell::make_function(env_, "uvasyncOnExit", &on_process_exit, exit_cell_);
        exit_cell_->target = this;
        napi_value global = nullptr;
        detail::check(env_, napi_get_global(env_, &global), "napi_get_global");
        napi_value process = js::property(env_, global, "process");
        napi_value args[2] = {js::string(env_, "exit"), fn};
        napi_value ignored = nullptr;
        detail::check(
            env_,
            napi_call_function(env_, process, js::property(env_, process, "on"), 2, args, &ignored),
            "process.on('exit')");
    }

    static napi_value on_process_exit(napi_env env, napi_callback_info info) {
        return guard(env, [&]() -> napi_value {
            void* data = nullptr;
            std::size_t argc = 0;
            detail::check(env, napi_get_cb_info(env, info, &argc, nullptr, nullptr, &data),
                          "napi_get_cb_info");
            if (environment* self = static_cast<exit_cell*>(data)->target; self != nullptr) {
                for (detail::call_base* c = self->calls_; c != nullptr; c = c->next) {
                    c->handle.cancel("the process is exiting");
                }
            }
            return nullptr;
        });
    }

    void complete(detail::call_base* c) noexcept {
        if (c->holds_loop && rt_) {
            rt_->keep_loop_alive(false);
        }
        if (stopping_) {
            c->discard(env_);
        } else {
            c->settle(env_);
        }
        forget(c);
    }

    void forget(detail::call_base* c) noexcept {
        (c->prev != nullptr ? c->prev->next : calls_) = c->next;
        if (c->next != nullptr) {
            c->next->prev = c->prev;
        }
        delete c;
    }

    static napi_value on_executor(napi_env env, napi_callback_info info) {
        return guard(env, [&]() -> napi_value {
            std::size_t argc = 2;
            napi_value argv[2]{};
            void* data = nullptr;
            detail::check(env, napi_get_cb_info(env, info, &argc, argv, nullptr, &data),
                          "napi_get_cb_info");
            auto* self = static_cast<environment*>(data);
            detail::check(env, napi_create_reference(env, argv[0], 1, &self->capture_resolve_),
                          "napi_create_reference");
            detail::check(env, napi_create_reference(env, argv[1], 1, &self->capture_reject_),
                          "napi_create_reference");
            return nullptr;
        });
    }

    /// Cancels every task, lets them finish, closes the runtime's handles; then frees what is
    /// left of every call. Runs no JavaScript.
    void teardown() noexcept {
        stopping_ = true;
        if (rt_) {
            try {
                rt_->shutdown(); // settlements posted meanwhile discard their calls
            } catch (...) {
                // shutdown only throws when called from inside a task; not the case here
            }
            rt_.reset();
        }
        // Calls whose task never finished (leaked after the grace period).
        while (detail::call_base* c = calls_) {
            c->discard(env_);
            forget(c);
        }
    }

    static void on_cleanup(napi_async_cleanup_hook_handle hook, void* arg) {
        auto* self = static_cast<environment*>(arg);
        self->teardown();
        self->hook_ = nullptr;
        (void)napi_remove_async_cleanup_hook(hook); // tells Node we are done
    }

    static void finalize(napi_env /*env*/, void* data, void* /*hint*/) {
        delete static_cast<environment*>(data);
    }

    napi_env env_;
    std::unique_ptr<uvasync::runtime> rt_;
    napi_async_cleanup_hook_handle hook_ = nullptr;
    bool stopping_ = false;
    napi_ref promise_ctor_ = nullptr;
    napi_ref executor_ = nullptr;
    napi_ref capture_resolve_ = nullptr;
    napi_ref capture_reject_ = nullptr;
    detail::call_base* calls_ = nullptr; // doubly linked through call_base::prev/next
    exit_cell* exit_cell_ = nullptr;     // shared with the process 'exit' listener
};

namespace detail {

inline napi_value ref_value(napi_env env, napi_ref ref) {
    napi_value v = nullptr;
    check(env, napi_get_reference_value(env, ref, &v), "napi_get_reference_value");
    return v;
}

template <class T>
napi_value listener_cell<T>::make_function(napi_env env, const char* name, napi_callback cb,
                                           listener_cell*& out) {
    auto* cell = new listener_cell{};
    napi_value fn = nullptr;
    if (const napi_status s = napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, cell, &fn);
        s != napi_ok) {
        delete cell;
        check(env, s, "napi_create_function");
    }
    if (const napi_status s = napi_add_finalizer(
            env, fn, cell,
            [](napi_env, void* data, void*) { drop(static_cast<listener_cell*>(data)); }, nullptr,
            nullptr);
        s != napi_ok) {
        delete cell; // the function exists but is never handed out; it never runs
        check(env, s, "napi_add_finalizer");
    }
    out = cell;
    return fn;
}

inline finished_notice::~finished_notice() {
    if (c_ != nullptr) {
        c_->owner->finished(c_);
    }
}

inline void call_base::discard(napi_env env) noexcept {
    (void)env;
    if (cell != nullptr) {
        cell->target = nullptr;
        abort_cell::drop(std::exchange(cell, nullptr));
    }
    owner->release(signal);
    owner->release(listener);
    owner->release(reason);
    owner->release(resolve);
    owner->release(reject);
    if (async != nullptr) {
        (void)napi_async_destroy(env, std::exchange(async, nullptr));
    }
    handle.detach();
}

inline void call_base::abort(napi_env env) noexcept {
    if (aborted || handle.done()) {
        return; // completion wins (SEMANTICS D-2): the settlement will resolve
    }
    aborted = true;
    try {
        napi_value r = js::property(env, ref_value(env, signal), "reason");
        if (js::type_of(env, r) != napi_undefined) {
            check(env, napi_create_reference(env, r, 1, &reason), "napi_create_reference");
        }
    } catch (...) {
        // No reason: the rejection becomes a plain AbortError.
        napi_value ignored = nullptr;
        (void)napi_get_and_clear_last_exception(env, &ignored);
    }
    handle.cancel("aborted by AbortSignal");
}

inline void call_base::settle(napi_env env) noexcept {
    napi_handle_scope scope = nullptr;
    if (napi_open_handle_scope(env, &scope) != napi_ok) {
        discard(env);
        return;
    }
    napi_callback_scope cb = nullptr;
    napi_value resource = nullptr;
    const bool in_callback = napi_create_object(env, &resource) == napi_ok &&
                             napi_open_callback_scope(env, resource, async, &cb) == napi_ok;
    // Stop listening first, so that an abort from here on finds nothing.
    if (cell != nullptr) {
        cell->target = nullptr;
        abort_cell::drop(std::exchange(cell, nullptr));
        try {
            napi_value s = ref_value(env, signal);
            napi_value remove = js::property(env, s, "removeEventListener");
            napi_value args[2] = {js::string(env, "abort"), ref_value(env, listener)};
            napi_value ignored = nullptr;
            check(env, napi_call_function(env, s, remove, 2, args, &ignored),
                  "removeEventListener");
        } catch (...) {
            report_pending(env);
        }
    }
    // The outcome: value, a failure, or a cancellation (the abort's reason, AbortError).
    bool ok = false;
    napi_value out = nullptr;
    if (has_value) {
        try {
            out = value(env);
            ok = true;
        } catch (...) {
            out = error_value(env, std::current_exception());
        }
    } else if (error) {
        out = error_value(env, error);
    } else if (timed_out) {
        try {
            out = make_timeout_error(env, timeout_ms);
        } catch (...) {
            out = nullptr;
        }
    } else {
        try {
            out = reason != nullptr ? ref_value(env, reason) : make_abort_error(env);
        } catch (...) {
            out = nullptr;
        }
    }
    if (out == nullptr) {
        (void)napi_get_undefined(env, &out);
    }
    try {
        napi_value fn = ref_value(env, ok ? resolve : reject);
        napi_value self = nullptr;
        napi_value ignored = nullptr;
        check(env, napi_get_undefined(env, &self), "napi_get_undefined");
        check(env, napi_call_function(env, self, fn, 1, &out, &ignored), "settling a Promise");
    } catch (...) {
        report_pending(env);
    }
    // The async context outlives the callback scope (async_hooks: 'after' before 'destroy').
    napi_async_context context = std::exchange(async, nullptr);
    discard(env);
    if (in_callback) {
        (void)napi_close_callback_scope(env, cb); // runs the reactions (microtasks, ticks)
    }
    if (context != nullptr) {
        (void)napi_async_destroy(env, context);
    }
    (void)napi_close_handle_scope(env, scope);
}

/// The task of a call: the user's task inside the optional timeout scope, its outcome stored
/// in the call; `notice` queues the settlement when the frame goes.
template <class T, class ToJs>
task<void> run_call(call<T, ToJs>* c, task<T> body, finished_notice notice) {
    (void)notice;
    // Node's loop time is cached per iteration and JavaScript may have run for a while since:
    // deadlines taken now must start from the real time.
    uv_update_time(c->loop);
    try {
        if (c->timeout_ms >= 0) {
            auto scoped = uvasync::timeout(std::chrono::duration<double, std::milli>(c->timeout_ms),
                                           std::move(body));
            try {
                if constexpr (std::is_void_v<T>) {
                    co_await scoped;
                    c->result.emplace();
                } else {
                    c->result.emplace(co_await scoped);
                }
                c->has_value = true;
            } catch (const timeout_error&) {
                if (!scoped.scope().caught()) {
                    throw; // the task's own timeout: a failure like any other
                }
                c->timed_out = true;
            }
        } else {
            if constexpr (std::is_void_v<T>) {
                co_await std::move(body);
                c->result.emplace();
            } else {
                c->result.emplace(co_await std::move(body));
            }
            c->has_value = true;
        }
    } catch (const cancelled_error&) {
        // The abort (or the environment's teardown); the settlement knows which. This is the
        // outermost frame of the task: nothing after this point suspends.
    } catch (...) {
        c->error = std::current_exception();
    }
}

} // namespace detail

/// Options of a call from JavaScript: the optional last argument `{ signal, timeout }`.
struct call_options {
    napi_value signal = nullptr; ///< an AbortSignal, or null
    double timeout_ms = -1;      ///< < 0: none
};

/// Reads `{ signal, timeout }` (undefined and null mean none). Throws `TypeError`
/// `ERR_INVALID_ARG_TYPE` for a non-object, a `signal` that is not an AbortSignal-like object,
/// a `timeout` that is not a number, and `RangeError` `ERR_OUT_OF_RANGE` for a negative or
/// non-finite `timeout`.
inline call_options parse_options(napi_env env, napi_value options) {
    call_options o;
    const napi_valuetype t = js::type_of(env, options);
    if (t == napi_undefined || t == napi_null) {
        return o;
    }
    if (t != napi_object) {
        throw type_error("ERR_INVALID_ARG_TYPE", "The \"options\" argument must be of type object");
    }
    napi_value signal = js::property(env, options, "signal");
    const napi_valuetype st = js::type_of(env, signal);
    if (st != napi_undefined && st != napi_null) {
        if (st != napi_object ||
            js::type_of(env, js::property(env, signal, "addEventListener")) != napi_function ||
            js::type_of(env, js::property(env, signal, "removeEventListener")) != napi_function ||
            js::type_of(env, js::property(env, signal, "aborted")) != napi_boolean) {
            throw type_error("ERR_INVALID_ARG_TYPE",
                             "The \"options.signal\" property must be an instance of AbortSignal");
        }
        o.signal = signal;
    }
    napi_value timeout = js::property(env, options, "timeout");
    if (js::type_of(env, timeout) != napi_undefined) {
        o.timeout_ms = js::to_number_in(env, timeout, "options.timeout", 0, 4294967295.0);
    }
    return o;
}

namespace detail {

inline napi_value on_abort(napi_env env, napi_callback_info info) {
    return guard(env, [&]() -> napi_value {
        void* data = nullptr;
        std::size_t argc = 0;
        check(env, napi_get_cb_info(env, info, &argc, nullptr, nullptr, &data), "napi_get_cb_info");
        if (auto* cell = static_cast<abort_cell*>(data); cell->target != nullptr) {
            cell->target->abort(env);
        }
        return nullptr;
    });
}

inline napi_value rejected(napi_env env, napi_value reason) {
    napi_deferred d = nullptr;
    napi_value promise = nullptr;
    check(env, napi_create_promise(env, &d, &promise), "napi_create_promise");
    check(env, napi_reject_deferred(env, d, reason), "napi_reject_deferred");
    return promise;
}

/// Registers `c` on `signal` with addEventListener('abort', fn, { once: true }).
inline void listen(napi_env env, call_base& c, napi_value signal) {
    abort_cell* cell = nullptr;
    napi_value fn = abort_cell::make_function(env, "onAbort", &on_abort, cell);
    // From here on the call owns one share of the cell, dropped by discard().
    c.cell = cell;
    napi_value options = nullptr;
    napi_value yes = nullptr;
    check(env, napi_create_object(env, &options), "napi_create_object");
    check(env, napi_get_boolean(env, true, &yes), "napi_get_boolean");
    check(env, napi_set_named_property(env, options, "once", yes), "napi_set_named_property");
    napi_value args[3] = {js::string(env, "abort"), fn, options};
    napi_value ignored = nullptr;
    check(env,
          napi_call_function(env, signal, js::property(env, signal, "addEventListener"), 3, args,
                             &ignored),
          "addEventListener");
    check(env, napi_create_reference(env, signal, 1, &c.signal), "napi_create_reference");
    check(env, napi_create_reference(env, fn, 1, &c.listener), "napi_create_reference");
    cell->target = &c;
}

} // namespace detail

namespace detail {

template <class ToJs, class T>
struct converts : std::is_invocable_r<napi_value, ToJs&, napi_env, T&&> {};

template <class ToJs>
struct converts<ToJs, void> : std::is_invocable_r<napi_value, ToJs&, napi_env> {};

} // namespace detail

/// How `promise_from` converts a task's `T` into a JavaScript value: `to_js(env, T&&)`, or
/// `to_js(env)` for `task<void>`; returns a `napi_value`, may throw.
template <class ToJs, class T>
concept converter = detail::converts<ToJs, T>::value;

/// Runs `t` as a task of the environment's runtime and returns a Promise of its result.
///
/// - The Promise settles only after the task has completely finished, its cleanup included,
///   on the loop thread: with `to_js(env, T&&)` (for `task<void>`, `to_js(env)` or
///   `undefined`), or rejected with the converted C++ exception (see `js_error`, `uv_error`).
///   The settlement runs in a callback scope of its own async context, in a later turn of the
///   loop than the task's end.
/// - `options` is the call's `{ signal, timeout }` (or null/undefined). A signal that is
///   already aborted rejects at once with `signal.reason` and `t` never starts. Otherwise an
///   `abort` listener is added with `{ once: true }` (`onabort` is never touched) and removed
///   when the task ends; an abort cancels the task, which then rejects with `signal.reason`,
///   or an `Error` named `AbortError` when there is none. `timeout` runs `t` inside a timeout
///   scope: its expiry rejects with an `Error` named `TimeoutError`. When an abort and the
///   timeout happen in the same loop iteration, the abort (the enclosing cancellation) wins
///   (SEMANTICS D-3); a task that completed first resolves (D-2).
/// - Bad options reject the Promise (`TypeError`/`RangeError` with `code`); so does an
///   environment that is shutting down. Never throws into JavaScript by itself; N-API
///   failures with a pending JavaScript exception reject with that exception.
///
/// **Thread:** the environment's JavaScript thread, from a Node-API callback.
template <class T, converter<T> ToJs>
[[nodiscard]] napi_value promise_from(napi_env env, task<T> t, ToJs to_js,
                                      napi_value options = nullptr) {
    try {
        environment& e = environment::of(env);
        const call_options o = parse_options(env, options);
        if (o.signal != nullptr) {
            bool aborted = false;
            detail::check(
                env, napi_get_value_bool(env, js::property(env, o.signal, "aborted"), &aborted),
                "napi_get_value_bool");
            if (aborted) {
                napi_value reason = js::property(env, o.signal, "reason");
                if (js::type_of(env, reason) == napi_undefined) {
                    reason = detail::make_abort_error(env);
                }
                return detail::rejected(env, reason); // `t` is destroyed unstarted
            }
        }
        uvasync::runtime& rt = e.runtime();
        auto owned = std::make_unique<detail::call<T, ToJs>>(std::move(to_js));
        auto* c = owned.get();
        c->owner = &e;
        c->timeout_ms = o.timeout_ms;
        napi_value promise = nullptr;
        try {
            promise = e.make_promise(c->resolve, c->reject);
            napi_value name = js::string(env, "uvasync");
            detail::check(env, napi_async_init(env, nullptr, name, &c->async), "napi_async_init");
            if (o.signal != nullptr) {
                detail::listen(env, *c, o.signal);
            }
        } catch (...) {
            c->discard(env);
            throw;
        }
        e.adopt(*owned.release());
        // The settlement goes through the runtime's queue: it runs on the loop thread outside
        // any task, after this task has finished, and during teardown it only discards.
        c->loop = rt.loop();
        auto body = detail::run_call(c, std::move(t), detail::finished_notice(c));
        c->handle = rt.spawn(std::move(body));
        // A pending call keeps the process alive, as a pending timer or fs request does; the
        // runtime's own handles are unreferenced while it merely waits.
        rt.keep_loop_alive(true);
        c->holds_loop = true;
        return promise;
    } catch (...) {
        napi_value reason = detail::error_value(env, std::current_exception());
        if (reason == nullptr) {
            return nullptr;
        }
        try {
            return detail::rejected(env, reason);
        } catch (...) {
            return nullptr;
        }
    }
}

/// `promise_from` for tasks whose value needs no conversion beyond `undefined`.
template <class T>
requires std::is_void_v<T>

[[nodiscard]] napi_value promise_from(napi_env env, task<T> t, napi_value options = nullptr) {
    return promise_from(
        env, std::move(t), [](napi_env e) { return js::undefined(e); }, options);
}

} // namespace uvasync::node
