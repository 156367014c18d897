// SPDX-License-Identifier: MIT
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>
#include <uvasync/error.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/signal.hpp>

namespace uvasync {

namespace detail {

/// One `uv_signal_t` per signal, plus the queue of signals nobody has taken yet. The queue
/// holds each kind of signal at most once, with a count, so a signal storm cannot grow it: it
/// is a ring of one entry per kind, allocated with the set, so queueing a signal (in libuv's
/// callback) and taking one (in `wait()`), both noexcept, never allocate.
class signal_state final : public handle_state {
public:
    signal_state(uv_loop_t* loop, const std::vector<int>& signals)
        : handle_state("signal_set")
        , loop_(loop)
        , slots_(std::make_unique<slot[]>(signals.size()))
        , order_(std::make_unique<std::size_t[]>(signals.size()))
        , count_(signals.size()) {
        for (std::size_t i = 0; i < count_; ++i) {
            slots_[i].owner = this;
            slots_[i].signum = signals[i];
        }
    }

    /// Initialises and starts every handle; on failure the caller closes the state.
    void start() {
        for (std::size_t i = 0; i < count_; ++i) {
            slot& s = slots_[i];
            check_uv(uv_signal_init(loop_, &s.handle), "signal_set: uv_signal_init");
            s.initialised = true;
            s.handle.data = static_cast<handle_state*>(this);
            // Only a waiting task keeps the loop alive (see wait()).
            uv_unref(reinterpret_cast<uv_handle_t*>(&s.handle));
            const int rc = uv_signal_start(&s.handle, &on_signal, s.signum);
            if (rc < 0) {
                throw_uv_error(
                    rc, ("signal_set: cannot catch signal " + std::to_string(s.signum)).c_str());
            }
        }
    }

    void on_close_requested() noexcept override {
        queued_ = 0;
        if (signal_awaiter* waiter = std::exchange(waiter_, nullptr)) {
            waiter->deliver(0);
        }
    }

    /// Closes the handles initialised so far (none after a failed construction).
    unsigned close_handles() noexcept override {
        unsigned n = 0;
        for (std::size_t i = 0; i < count_; ++i) {
            if (slots_[i].initialised) {
                close_uv_handle(reinterpret_cast<uv_handle_t*>(&slots_[i].handle));
                ++n;
            }
        }
        return n;
    }

    [[nodiscard]] bool busy() const noexcept { return waiter_ != nullptr; }

    [[nodiscard]] bool has_pending() const noexcept { return queued_ != 0; }

    /// Takes the next queued signal (there is one).
    int take() noexcept {
        const std::size_t i = order_[first_];
        first_ = (first_ + 1) % count_;
        --queued_;
        slot& s = slots_[i];
        if (--s.pending > 0) {
            enqueue(i); // round robin among the kinds of signal
        } else {
            s.queued = false;
        }
        return s.signum;
    }

    /// The signal numbers, space-separated (runtime::dump).
    void append_signals(std::string& out) const {
        for (std::size_t i = 0; i < count_; ++i) {
            if (i != 0) {
                out += ' ';
            }
            out += std::to_string(slots_[i].signum);
        }
    }

    /// Hands `w` the next queued signal, or registers it until one arrives.
    void wait(signal_awaiter* w) noexcept {
        if (has_pending()) {
            w->deliver(take());
            return;
        }
        waiter_ = w;
        set_ref(true);
    }

    void forget(signal_awaiter* w) noexcept {
        if (waiter_ == w) {
            waiter_ = nullptr;
            set_ref(false);
        }
    }

private:
    struct slot {
        uv_signal_t handle{};
        signal_state* owner = nullptr;
        int signum = 0;
        std::uint64_t pending = 0;
        bool queued = false;
        bool initialised = false;
    };

    /// Appends the kind `i` to the ring; it is not in it (`slot::queued`), so there is room.
    void enqueue(std::size_t i) noexcept {
        order_[(first_ + queued_) % count_] = i;
        ++queued_;
    }

    void set_ref(bool on) noexcept {
        for (std::size_t i = 0; i < count_; ++i) {
            auto* h = reinterpret_cast<uv_handle_t*>(&slots_[i].handle);
            if (on) {
                uv_ref(h);
            } else {
                uv_unref(h);
            }
        }
    }

    static void on_signal(uv_signal_t* handle, int /*signum*/) noexcept {
        auto* s = reinterpret_cast<slot*>(handle); // the handle is the slot's first member
        signal_state* self = s->owner;
        if (self->closing) {
            return;
        }
        ++s->pending;
        if (!s->queued) {
            s->queued = true;
            self->enqueue(static_cast<std::size_t>(s - self->slots_.get()));
        }
        if (signal_awaiter* w = std::exchange(self->waiter_, nullptr)) {
            self->set_ref(false);
            w->deliver(self->take());
        }
    }

    uv_loop_t* loop_;
    std::unique_ptr<slot[]> slots_;
    std::unique_ptr<std::size_t[]> order_; // the ring: kinds with queued signals, oldest first
    std::size_t count_;
    std::size_t first_ = 0;  // the ring's oldest entry
    std::size_t queued_ = 0; // entries in the ring
    signal_awaiter* waiter_ = nullptr;
};

const wait_kind signal_awaiter::kind{"signal", &signal_awaiter::describe};

// "signal 10 12": the signals of the set it waits on.
void signal_awaiter::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    if (const signal_state* s = static_cast<const signal_awaiter&>(w).state_; s != nullptr) {
        s->append_signals(out);
    }
}

signal_awaiter::signal_awaiter(signal_state* state) noexcept
    : single_waiter(state, kind) {
}

signal_awaiter::~signal_awaiter() {
    leave_slot();
}

bool signal_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ == nullptr || state_->closing) {
        throw invalid_state("uvasync: signal_set::wait on a closed or moved-from set");
    }
    if (state_->busy()) {
        throw invalid_state("uvasync: signal_set::wait is already awaited by another task");
    }
    return park_and_wait(caller, "signal_set::wait");
}

int signal_awaiter::await_resume() {
    finish();
    if (signum_ == 0) {
        throw invalid_state("uvasync: the signal_set was closed while wait() waited");
    }
    return signum_;
}

void signal_awaiter::deliver(int signum) noexcept {
    signum_ = signum;
    complete();
}

} // namespace detail

signal_set::signal_set(std::initializer_list<int> signals) {
    if (signals.size() == 0) {
        throw std::invalid_argument("uvasync: signal_set needs at least one signal");
    }
    std::vector<int> unique;
    for (int s : signals) {
        if (std::find(unique.begin(), unique.end(), s) == unique.end()) {
            unique.push_back(s);
        }
    }
    detail::runtime_state& rt = detail::current_runtime("signal_set");
    auto* state = new detail::signal_state(rt.loop(), unique);
    try {
        state->start();
    } catch (...) {
        detail::release(state); // closes the handles already initialised
        throw;
    }
    state_.reset(state);
}

detail::signal_awaiter signal_set::wait() {
    return detail::signal_awaiter(state_.get());
}

detail::close_awaiter signal_set::close() noexcept {
    return detail::close_awaiter::owning(state_.take());
}

} // namespace uvasync
