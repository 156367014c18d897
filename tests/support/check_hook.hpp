// SPDX-License-Identifier: MIT
// A check handle that acts between an operation's completion and its task's resumption.
#pragma once

#include <functional>
#include <utility>

#include <doctest/doctest.h>
#include <uv.h>

#include "uv_close.hpp"

namespace uvasync::test {

/// A `uv_check_t` that runs `fn` after every poll phase, before the runtime's own check
/// callback resumes the tasks made ready in that poll (libuv runs the check handle started last
/// first), until `fn` returns true. This lets a test cancel a task in the same loop iteration as
/// the completion of its operation, which is D-2's "completion wins" case.
class check_hook {
public:
    check_hook(uv_loop_t* loop, std::function<bool()> fn)
        : state_(new state{}) {
        state_->fn = std::move(fn);
        REQUIRE(uv_check_init(loop, &state_->handle) == 0);
        state_->handle.data = state_;
        REQUIRE(uv_check_start(&state_->handle, [](uv_check_t* h) {
                    auto* st = static_cast<state*>(h->data);
                    if (!st->fired && st->fn()) {
                        st->fired = true;
                        uv_check_stop(h);
                    }
                }) == 0);
    }

    check_hook(const check_hook&) = delete;
    check_hook& operator=(const check_hook&) = delete;
    check_hook(check_hook&&) = delete;
    check_hook& operator=(check_hook&&) = delete;

    ~check_hook() { detail::close_then_delete(state_, &state_->handle); }

    [[nodiscard]] bool fired() const noexcept { return state_->fired; }

private:
    struct state {
        uv_check_t handle{};
        std::function<bool()> fn;
        bool fired = false;
    };

    state* state_;
};

} // namespace uvasync::test
