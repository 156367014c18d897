// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <uvasync/detail/completion_set.hpp>
#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>
#include <uvasync/gather.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>

// **Thread:** everything in this header is loop-thread only: the awaitables are created and
// awaited inside a task of the runtime (a call from another thread throws `invalid_state`).
namespace uvasync {

/// Which child finished first (its position among the arguments) and how it ended.
template <class T>
struct completion {
    std::size_t index;
    outcome<T> result;
};

/// `wait_any(aws...)` over awaitables of different value types: the winner's position and its
/// outcome, in the variant alternative of that position (`result.index() == index`). When all
/// value types are the same, `wait_any` returns a `completion<T>` instead.
template <class... T>
struct any_completion {
    using variant_type = std::variant<outcome<T>...>;

    std::size_t index;
    variant_type result;
};

namespace detail {

template <class A>
bool valid_child(const A& aw) noexcept {
    if constexpr (requires { aw.valid(); }) {
        return aw.valid();
    } else {
        return true;
    }
}

/// wait_any's entry checks: at least one child, no empty task or handle, and a cancellation
/// point (nothing starts in a cancelled scope).
inline task_core* enter_wait_any(bool empty, bool all_valid) {
    task_core* core = require_task("wait_any");
    if (empty) {
        throw std::invalid_argument("uvasync: wait_any needs at least one awaitable");
    }
    if (!all_valid) {
        throw invalid_state("uvasync: wait_any got an empty or already awaited task or handle");
    }
    if (core->current->cancelled()) {
        throw_cancelled(core);
    }
    return core;
}

/// The winner's cancellation is raised, not returned, when it is the caller's own (an
/// enclosing scope is cancelled), like gather(return_exceptions) (SEMANTICS 10.6).
inline void raise_if_own_cancellation(task_core* winner, task_core* core) {
    if (winner->result == outcome::cancelled && core->current->cancelled()) {
        throw_cancelled(core);
    }
}

template <class T>
struct wait_any_range {
    static task<completion<T>> call(std::vector<task<T>>& tasks) {
        bool all_valid = true;
        for (const auto& t : tasks) {
            all_valid = all_valid && t.valid();
        }
        task_core* core = enter_wait_any(tasks.empty(), all_valid);
        completion_set set(true);
        set.describe_as("wait_any");
        set.reserve(tasks.size());
        std::vector<task_handle<T>> handles;
        handles.reserve(tasks.size());
        set.enter(core);
        for (auto& t : tasks) {
            handles.push_back(set.spawn(std::move(t)));
        }
        co_await set.wait_all(); // the first to finish cancelled the others
        set.leave();
        task_core* winner = set.done().front();
        raise_if_own_cancellation(winner, core);
        std::size_t i = 0;
        while (handles[i].state() != winner) {
            ++i;
        }
        co_return completion<T>{i, take_outcome(handles[i].state())};
    }
};

template <class R>
struct is_completion : std::false_type {};

template <class T>
struct is_completion<completion<T>> : std::true_type {};

template <class T, class... U>
constexpr bool all_same_v = (std::is_same_v<T, U> && ...);

/// `completion<T>` when every child has the same value type, else `any_completion<T...>`.
template <class... T>
struct any_result {
    using type = any_completion<T...>;
};

template <class T, class... U>
requires all_same_v<T, U...>

struct any_result<T, U...> {
    using type = completion<T>;
};

template <class... A>
struct wait_any_fixed {
    using result = typename any_result<child_value_t<A>...>::type;

    static task<result> call(A&... aws) {
        task_core* core = enter_wait_any(sizeof...(A) == 0, (valid_child(aws) && ...));
        completion_set set(true);
        set.describe_as("wait_any");
        set.reserve(sizeof...(A));
        set.enter(core);
        std::optional<std::tuple<task_handle<child_value_t<A>>...>> spawned;
        const std::exception_ptr spawn_error =
            spawn_children(set, "wait_any could not start every task", spawned, aws...);
        co_await set.wait_all(); // the first to finish cancelled the others
        set.leave();
        if (spawn_error) {
            std::rethrow_exception(spawn_error);
        }
        auto& handles = *spawned;
        task_core* winner = set.done().front();
        raise_if_own_cancellation(winner, core);
        co_return pick(handles, winner, std::index_sequence_for<A...>{});
    }

    template <std::size_t... I>
    static result pick(std::tuple<task_handle<child_value_t<A>>...>& handles, task_core* winner,
                       std::index_sequence<I...> /*unused*/) {
        std::optional<result> out;
        auto take = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
            if (std::get<J>(handles).state() != winner) {
                return false;
            }
            if constexpr (is_completion<result>::value) {
                out.emplace(result{J, take_outcome(std::get<J>(handles).state())});
            } else {
                out.emplace(result{
                    J, typename result::variant_type(std::in_place_index<J>,
                                                     take_outcome(std::get<J>(handles).state()))});
            }
            return true;
        };
        (void)(take(std::integral_constant<std::size_t, I>{}) || ...);
        return std::move(*out);
    }
};

/// Waits, without owning them, until one of several spawned tasks is done.
class [[nodiscard]] first_done_awaiter : private parked_wait {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    explicit first_done_awaiter(std::vector<task_core*> targets)
        : parked_wait(&on_abort, kind())
        , targets_(std::move(targets)) {
        if (targets_.empty()) {
            throw std::invalid_argument("uvasync: first_done needs at least one task_handle");
        }
        for (task_core* t : targets_) {
            if (t == nullptr) {
                targets_.clear();
                throw invalid_state("uvasync: first_done got an empty task_handle");
            }
        }
        for (task_core* t : targets_) {
            t->add_ref(); // the caller's handles may go before the wait ends
        }
    }

    first_done_awaiter(first_done_awaiter&& other) noexcept // only before it is awaited
        : parked_wait(std::move(other))
        , targets_(std::move(other.targets_)) {}

    first_done_awaiter(const first_done_awaiter&) = delete;
    first_done_awaiter& operator=(const first_done_awaiter&) = delete;
    first_done_awaiter& operator=(first_done_awaiter&&) = delete;

    ~first_done_awaiter() {
        detach();
        release_all();
    }

    // Some task already done: its index at once, not a cancellation point.
    [[nodiscard]] bool await_ready() noexcept {
        for (std::size_t i = 0; i < targets_.size(); ++i) {
            if (targets_[i]->done()) {
                winner_ = i;
                return true;
            }
        }
        return false;
    }

    bool await_suspend(std::coroutine_handle<> caller) {
        for (task_core* t : targets_) {
            if (t == current_task()) {
                throw invalid_state("uvasync: a task cannot wait for its own handle");
            }
        }
        if (!park(caller, "first_done")) {
            return false;
        }
        slots_ = std::make_unique<slot[]>(targets_.size());
        for (std::size_t i = 0; i < targets_.size(); ++i) {
            slots_[i].owner = this;
            slots_[i].index = i;
            targets_[i]->waiters.push_back(slots_[i]);
        }
        return true;
    }

    std::size_t await_resume() {
        detach();
        if (winner_ == npos) {
            finish(); // raises: cancelled before any task finished
        }
        return winner_;
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    struct slot : task_waiter {
        slot() noexcept
            : task_waiter(&slot_done) {}

        slot(const slot&) = delete;
        slot& operator=(const slot&) = delete;
        slot(slot&&) = delete;
        slot& operator=(slot&&) = delete;

        ~slot() { unlink(); }

        first_done_awaiter* owner = nullptr;
        std::size_t index = 0;
    };

    static void slot_done(task_waiter* w) noexcept {
        auto* s = static_cast<slot*>(w);
        first_done_awaiter* self = s->owner;
        if (self->winner_ == npos && self->waiting()) {
            self->winner_ = s->index;
            self->complete();
        }
    }

    // runtime::dump: "first_done over 3 tasks".
    static const wait_kind& kind() noexcept {
        static constexpr wait_kind k{"first_done", &describe};
        return k;
    }

    static void describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
        out += "over " + std::to_string(static_cast<const first_done_awaiter&>(w).targets_.size()) +
               " tasks";
    }

    // The caller is cancelled: stop waiting; the tasks run on (they are the caller's).
    static void on_abort(parked_wait* p) noexcept {
        auto* self = static_cast<first_done_awaiter*>(p);
        self->detach();
        self->aborted();
    }

    void detach() noexcept {
        if (slots_) {
            for (std::size_t i = 0; i < targets_.size(); ++i) {
                slots_[i].unlink();
            }
        }
    }

    void release_all() noexcept {
        for (task_core* t : std::exchange(targets_, {})) {
            if (t != nullptr) {
                t->release();
            }
        }
    }

    std::vector<task_core*> targets_;
    std::unique_ptr<slot[]> slots_;
    std::size_t winner_ = npos;
};

} // namespace detail

/// Runs the awaitables concurrently as children (like `gather`) and returns as soon as the
/// first of them finishes, whatever its outcome (asyncio `wait(return_when=FIRST_COMPLETED)`).
/// Structured (SEMANTICS 22): the others are then cancelled, and `wait_any` waits until they
/// have all finished, cleanup included, before it returns the winner's position and
/// `outcome` (a `completion<T>` when all value types are equal, else an `any_completion`); no
/// child outlives the call. The losers' outcomes are consumed: values are
/// destroyed, errors are neither rethrown nor reported. A `task_handle` argument is awaited
/// with forwarding, as in `gather`, so a losing handle's task is cancelled; to keep the
/// losers running, spawn them yourself and use `first_done`.
///
/// **Cancellation:** entering is a cancellation point (nothing starts). A cancellation from
/// outside reaches every child; the first of them to finish wins as usual. If the winner ended
/// cancelled while a scope around `wait_any` is cancelled, the caller's cancellation is raised
/// instead of returned; a winner with a value or an error is returned (D-2) and the caller's
/// next cancellation point raises. No arguments: `std::invalid_argument`.
template <class... A>
auto wait_any(A&&... aws) {
    using impl = detail::wait_any_fixed<std::remove_cvref_t<A>...>;
    return detail::deferred_call<typename impl::result, impl, std::remove_cvref_t<A>...>(
        std::forward<A>(aws)...);
}

/// `wait_any` over a runtime-sized list of tasks: the winner's index in the vector and its
/// outcome. An empty vector: `std::invalid_argument`.
template <class T>
auto wait_any(std::vector<task<T>> tasks) {
    using impl = detail::wait_any_range<T>;
    return detail::deferred_call<completion<T>, impl, std::vector<task<T>>>(std::move(tasks));
}

/// Waits until one of the given spawned tasks is done and returns its position (the lowest
/// one if several already are). Cancels nothing and owns nothing: the caller keeps every task
/// and reads the winner's outcome from its handle (asyncio `wait(tasks, FIRST_COMPLETED)`).
///
/// **Cancellation:** a cancellation point without forwarding: a caller cancelled while it
/// waits stops waiting and raises; the tasks run on. A task that finished before the
/// cancellation took effect is reported (D-2). Not a cancellation point if one is done
/// already. No handles: `std::invalid_argument`; an empty handle: `invalid_state`.
template <class... T>
[[nodiscard]] detail::first_done_awaiter first_done(const task_handle<T>&... handles) {
    return detail::first_done_awaiter(std::vector<detail::task_core*>{handles.state()...});
}

template <class T>
[[nodiscard]] detail::first_done_awaiter first_done(const std::vector<task_handle<T>>& handles) {
    std::vector<detail::task_core*> targets;
    targets.reserve(handles.size());
    for (const auto& h : handles) {
        targets.push_back(h.state());
    }
    return detail::first_done_awaiter(std::move(targets));
}

} // namespace uvasync
