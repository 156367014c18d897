// SPDX-License-Identifier: MIT
#include <csignal>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include <uvasync/error.hpp>
#include <uvasync/runtime.hpp>

#include "runtime_cold.hpp"

namespace uvasync {

namespace {

detail::runtime_state::config to_config(runtime_options&& o) {
    detail::runtime_state::config c;
    c.clock = o.virtual_clock ? detail::clock_kind::virtual_time : detail::clock_kind::loop;
    c.autojump = o.autojump;
    c.autojump_threshold = o.autojump_threshold;
    c.shutdown_grace = o.shutdown_grace;
    c.exception_handler = std::move(o.exception_handler);
    c.tracer = std::move(o.tracer);
    c.slow_wait_threshold = o.slow_wait_threshold;
    c.dump_signal = o.dump_signal;
    if (o.dump_signal < 0 || o.dump_signal >= NSIG || o.dump_signal == SIGKILL ||
        o.dump_signal == SIGSTOP) { // checked before any handle exists: nothing to undo
        throw std::invalid_argument("uvasync: runtime_options::dump_signal is not a signal number");
    }
    if (o.slow_wait_threshold.count() < 0) {
        throw std::invalid_argument("uvasync: runtime_options durations must not be negative");
    }
    if (c.autojump_threshold.count() < 0 || c.shutdown_grace.count() < 0) {
        throw std::invalid_argument("uvasync: runtime_options durations must not be negative");
    }
    return c;
}

uv_loop_t* make_loop() {
    auto loop = std::make_unique<uv_loop_t>();
    if (const int rc = uv_loop_init(loop.get()); rc < 0) {
        throw std::system_error(-rc, std::generic_category(),
                                std::string("uvasync: uv_loop_init: ") + uv_strerror(rc));
    }
    return loop.release();
}

} // namespace

runtime::runtime(runtime_options options) {
    auto config = to_config(std::move(options));
    uv_loop_t* loop = make_loop();
    try {
        state_ = std::make_unique<detail::runtime_state>(loop, true, std::move(config));
    } catch (...) {
        uv_loop_close(loop);
        delete loop;
        throw;
    }
    state_->set_facade(this);
}

runtime::runtime(uv_loop_t* host, runtime_options options)
    : state_(std::make_unique<detail::runtime_state>(host, false, to_config(std::move(options)))) {
    state_->set_facade(this);
}

runtime& runtime::current() {
    detail::runtime_state& rt = detail::current_runtime("runtime::current()");
    if (rt.facade() == nullptr) {
        throw invalid_state("uvasync: runtime::current(): the runtime has no public object");
    }
    return *rt.facade();
}

namespace detail {

// NOLINTNEXTLINE(performance-unnecessary-value-param): the signature runtime.hpp declares
void shutdown_after_main(runtime_state& rt, std::exception_ptr main_failure) {
    try {
        rt.shutdown();
    } catch (...) {
        if (main_failure) {
            rt.report(main_failure);
        }
        throw;
    }
}

} // namespace detail

runtime::~runtime() = default; // runtime_state's destructor shuts down

} // namespace uvasync
