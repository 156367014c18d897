// SPDX-License-Identifier: MIT
// The cancellation token tree: cancel_source, cancel_token, cancel_callback, drop_guard,
// run_until_cancelled, spawning with a token and current_token() (SEMANTICS 11, D-10, D-11).
// Everything here runs on the loop thread; cross-thread behaviour is in threads_test.cpp.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"

#include <malloc.h>
#include <pthread.h>

using namespace std::chrono_literals;
using namespace uvasync;
using uvasync::test::counted;
using uvasync::test::loop_fixture;

namespace {

// ---------------------------------------------------------------------------------------------
// Callbacks. Named function objects, so registrations can live in std::optional and in arrays.

struct bump {
    int* n;

    void operator()() const noexcept { ++*n; }
};

struct log_to {
    std::vector<std::string>* log;
    const char* name;

    void operator()() const noexcept { log->emplace_back(name); }
};

using bump_registration = cancel_callback<bump>;

// ---------------------------------------------------------------------------------------------
// Task bodies. Plain functions: their parameters live in the frame (no captures).

task<> sleep_for(loop_clock::duration d) {
    co_await sleep(d);
}

task<> await_handle(task_handle<> h) {
    co_await h;
}

template <class T>
task<T> await_value(task_handle<T> h) {
    co_return co_await h;
}

task<> wait_token(cancel_token t) {
    co_await t.cancelled();
}

task<> set_flag(bool& flag) {
    flag = true;
    co_return;
}

task<> mark_then_sleep(bool& started, counted /*held*/) {
    started = true;
    co_await sleep(1h);
}

task<> cancel_source_after(loop_clock::duration d, cancel_source src, std::string msg) {
    co_await sleep(d);
    src.request_cancel(msg);
}

task<> cancel_task_after(loop_clock::duration d, task_handle<> h, std::string msg) {
    co_await sleep(d);
    h.cancel(msg);
}

/// Awaits `h` in a fresh task and returns the message of the `cancelled_error` it raises
/// ("<not cancelled>" if it does not raise one).
std::string cancel_message_of(loop_fixture& f, const task_handle<>& h) {
    try {
        f.run(await_handle(h));
    } catch (const cancelled_error& e) {
        return std::string(e.message());
    }
    return "<not cancelled>";
}

/// Runs loop iterations until `done()` holds, at most `max_iterations` of them.
template <class Pred>
bool pump(loop_fixture& f, Pred done, int max_iterations = 10000) {
    for (int i = 0; i < max_iterations && !done(); ++i) {
        uv_run(f.loop(), UV_RUN_ONCE);
    }
    return done();
}

std::ptrdiff_t position(const std::vector<std::string>& log, const std::string& name) {
    for (std::size_t i = 0; i < log.size(); ++i) {
        if (log[i] == name) {
            return static_cast<std::ptrdiff_t>(i);
        }
    }
    return -1;
}

/// Runs `fn` on a thread with a 1 MiB stack and waits for it. Propagation or destruction that
/// recursed once per tree level would overflow this stack long before depth 100,000.
template <class F>
void on_small_stack(F& fn) {
    pthread_attr_t attr;
    REQUIRE(pthread_attr_init(&attr) == 0);
    REQUIRE(pthread_attr_setstacksize(&attr, std::size_t(1) << 20) == 0);
    pthread_t thread{};
    auto trampoline = [](void* p) -> void* {
        (*static_cast<F*>(p))();
        return nullptr;
    };
    REQUIRE(pthread_create(&thread, &attr, trampoline, &fn) == 0);
    REQUIRE(pthread_join(thread, nullptr) == 0);
    pthread_attr_destroy(&attr);
}

std::size_t heap_in_use() {
    return mallinfo2().uordblks;
}

} // namespace

TEST_SUITE("cancel") {

    // ---------------------------------------------------------------------------------------------
    // 11.1 One-way, idempotent transitions

    TEST_CASE_FIXTURE(loop_fixture, "11.1 a new source is not cancelled and request_cancel returns "
                                    "true exactly once") {
        cancel_source src;
        cancel_token tok = src.token();
        CHECK_FALSE(src.cancel_requested());
        CHECK_FALSE(tok.cancel_requested());
        CHECK(tok.can_be_cancelled());

        CHECK(src.request_cancel());
        CHECK(src.cancel_requested());
        CHECK(tok.cancel_requested());

        CHECK_FALSE(src.request_cancel());
        CHECK_FALSE(src.request_cancel("again"));
        CHECK(src.cancel_requested());
        CHECK(tok.can_be_cancelled());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.1 copies of a source share one state") {
        cancel_source a;
        cancel_source b = a; // NOLINT(performance-unnecessary-copy-initialization)
        cancel_source c;
        c = a;
        CHECK(a.token() == b.token());
        CHECK(a.token() == c.token());

        CHECK(b.request_cancel());
        CHECK(a.cancel_requested());
        CHECK(c.cancel_requested());
        CHECK_FALSE(a.request_cancel());
        CHECK_FALSE(c.request_cancel());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.1 callbacks run once in total however often cancellation is "
                      "requested") {
        cancel_source parent;
        cancel_source child(parent.token());
        int on_parent = 0;
        int on_child = 0;
        auto r1 = parent.token().on_cancel(bump{&on_parent});
        auto r2 = child.token().on_cancel(bump{&on_child});

        CHECK(child.request_cancel());
        CHECK(on_child == 1);
        CHECK(on_parent == 0);

        CHECK(parent.request_cancel());
        CHECK_FALSE(parent.request_cancel());
        CHECK_FALSE(child.request_cancel());
        CHECK(on_parent == 1);
        CHECK(on_child == 1);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.1 a source cancelled through its parent reports that its "
                                    "own request_cancel made no transition") {
        cancel_source parent;
        cancel_source child(parent.token());
        cancel_source grandchild(child.token());
        CHECK(parent.request_cancel());
        CHECK_FALSE(child.request_cancel());
        CHECK_FALSE(grandchild.request_cancel());
    }

    TEST_CASE_FIXTURE(loop_fixture, "the default token can never be cancelled") {
        cancel_token none;
        CHECK_FALSE(none.can_be_cancelled());
        CHECK_FALSE(none.cancel_requested());
        CHECK(none == cancel_token{});

        int ran = 0;
        {
            auto r = none.on_cancel(bump{&ran}); // registering is allowed and does nothing
        }
        CHECK(ran == 0);

        // A source linked to the default token is an ordinary root.
        cancel_source root{cancel_token{}};
        CHECK(root.token().can_be_cancelled());
        CHECK_FALSE(root.cancel_requested());
        CHECK(root.request_cancel());
        CHECK(root.cancel_requested());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.9 awaiting cancelled() on the default token waits until the "
                      "awaiting scope is cancelled") {
        const deadline start = now();
        std::optional<unit> r = run([]() -> task<std::optional<unit>> {
            const cancel_token none;
            co_return co_await move_on_after(10ms, wait_token(none));
        }());
        CHECK_FALSE(r.has_value());
        CHECK((now() - start) == 10ms);
    }

    // ---------------------------------------------------------------------------------------------
    // D-11 The first message wins

    TEST_CASE_FIXTURE(loop_fixture, "D-11 the first message wins and later requests are ignored") {
        cancel_source src;
        task_handle<> h = rt->spawn(sleep_for(1h), src.token());
        bool first = false;
        bool second = true;
        run([](cancel_source s, bool& first, bool& second) -> task<> {
            co_await sleep(5ms);
            first = s.request_cancel("first");
            second = s.request_cancel("second");
        }(src, first, second));
        CHECK(first);
        CHECK_FALSE(second);
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(h.cancelled());
        CHECK(cancel_message_of(*this, h) == "first");
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-11 a child cancelled through its parent keeps the parent's "
                                    "message") {
        cancel_source parent;
        cancel_source child(parent.token());
        task_handle<> h = rt->spawn(sleep_for(1h), child.token());
        run(cancel_source_after(5ms, parent, "from parent"));
        CHECK_FALSE(child.request_cancel("from child"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(h.cancelled());
        CHECK(cancel_message_of(*this, h) == "from parent");
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-11 a request without a message gives an empty message") {
        cancel_source src;
        task_handle<> h = rt->spawn(sleep_for(1h), src.token());
        run(cancel_source_after(5ms, src, ""));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(h.cancelled());
        CHECK(cancel_message_of(*this, h).empty());
    }

    // ---------------------------------------------------------------------------------------------
    // 11.2 Linked sources

    TEST_CASE_FIXTURE(loop_fixture, "11.2 cancelling a parent cancels every linked descendant") {
        cancel_source root;
        cancel_source a(root.token());
        cancel_source b(root.token());
        cancel_source aa(a.token());
        cancel_source aaa(aa.token());

        CHECK(root.request_cancel());
        CHECK(a.cancel_requested());
        CHECK(b.cancel_requested());
        CHECK(aa.cancel_requested());
        CHECK(aaa.cancel_requested());
        CHECK(aaa.token().cancel_requested());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.2 cancelling a child affects neither its parent nor its "
                                    "siblings") {
        cancel_source parent;
        cancel_source c1(parent.token());
        cancel_source c2(parent.token());
        cancel_source c1_child(c1.token());
        int on_parent = 0;
        int on_c2 = 0;
        auto rp = parent.token().on_cancel(bump{&on_parent});
        auto r2 = c2.token().on_cancel(bump{&on_c2});

        CHECK(c1.request_cancel());
        CHECK(c1.cancel_requested());
        CHECK(c1_child.cancel_requested());
        CHECK_FALSE(parent.cancel_requested());
        CHECK_FALSE(c2.cancel_requested());
        CHECK(on_parent == 0);
        CHECK(on_c2 == 0);

        // A task bound to the parent keeps running to completion.
        task_handle<> h = rt->spawn(sleep_for(5ms), parent.token());
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK_FALSE(h.cancelled());

        // The parent is still fully functional.
        CHECK(parent.request_cancel());
        CHECK(c2.cancel_requested());
        CHECK(on_parent == 1);
        CHECK(on_c2 == 1);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.2 a source linked to a cancelled parent is born cancelled") {
        cancel_source parent;
        CHECK(parent.request_cancel("parent gone"));

        cancel_source child(parent.token());
        CHECK(child.cancel_requested());
        CHECK(child.token().cancel_requested());
        CHECK_FALSE(child.request_cancel("too late"));

        // Its descendants are born cancelled too, and registering on it runs the callback inline.
        cancel_source grandchild(child.token());
        CHECK(grandchild.cancel_requested());
        int ran = 0;
        auto r = grandchild.token().on_cancel(bump{&ran});
        CHECK(ran == 1);

        // It carries the parent's message.
        task_handle<> h = rt->spawn(sleep_for(1h), grandchild.token());
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(h.cancelled());
        CHECK(cancel_message_of(*this, h) == "parent gone");
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.2 a source linked under current_token() is cancelled with "
                                    "the task") {
        struct probe {
            bool before = true;
            bool after = false;
        } p;

        task_handle<> h = rt->spawn([](probe& p) -> task<> {
            cancel_source work(current_token());
            p.before = work.cancel_requested();
            try {
                co_await sleep(1h);
            } catch (const cancelled_error&) {
                p.after = work.cancel_requested();
                throw;
            }
        }(p));
        run(cancel_task_after(5ms, h, "stop"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK_FALSE(p.before);
        CHECK(p.after);
        CHECK(h.cancelled());
    }

    // ---------------------------------------------------------------------------------------------
    // 11.4 Propagation on the loop thread

    TEST_CASE_FIXTURE(loop_fixture, "11.4 request_cancel on the loop thread has propagated to the "
                                    "whole subtree and run every callback when it returns") {
        cancel_source root;
        cancel_source a(root.token());
        cancel_source aa(a.token());
        cancel_source b(root.token());
        int n_root = 0;
        int n_a = 0;
        int n_aa = 0;
        int n_b = 0;
        auto r_root = root.token().on_cancel(bump{&n_root});
        auto r_a = a.token().on_cancel(bump{&n_a});
        auto r_aa = aa.token().on_cancel(bump{&n_aa});
        auto r_b = b.token().on_cancel(bump{&n_b});

        CHECK(root.request_cancel());
        CHECK(n_root == 1);
        CHECK(n_a == 1);
        CHECK(n_aa == 1);
        CHECK(n_b == 1);
        CHECK(aa.cancel_requested());
        CHECK(b.cancel_requested());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.4 callbacks run parent before descendants and in "
                                    "registration order within a token") {
        std::vector<std::string> log;
        cancel_source root;
        auto r1 = root.token().on_cancel(log_to{&log, "r1"});
        cancel_source a(root.token());
        auto a1 = a.token().on_cancel(log_to{&log, "a1"});
        auto r2 = root.token().on_cancel(log_to{&log, "r2"}); // registered after a1
        cancel_source b(root.token());
        auto b1 = b.token().on_cancel(log_to{&log, "b1"});
        cancel_source aa(a.token());
        auto aa1 = aa.token().on_cancel(log_to{&log, "aa1"});
        auto b2 = b.token().on_cancel(log_to{&log, "b2"});
        auto r3 = root.token().on_cancel(log_to{&log, "r3"});
        cancel_source bb(b.token());
        auto bb1 = bb.token().on_cancel(log_to{&log, "bb1"});
        auto a2 = a.token().on_cancel(log_to{&log, "a2"});

        CHECK(root.request_cancel());
        REQUIRE(log.size() == 9);
        for (const char* name : {"r1", "r2", "r3", "a1", "a2", "aa1", "b1", "b2", "bb1"}) {
            CHECK_MESSAGE(position(log, name) >= 0, name);
        }
        // Registration order within each token.
        CHECK(position(log, "r1") < position(log, "r2"));
        CHECK(position(log, "r2") < position(log, "r3"));
        CHECK(position(log, "a1") < position(log, "a2"));
        CHECK(position(log, "b1") < position(log, "b2"));
        // Parent before descendants.
        for (const char* child : {"a1", "a2", "aa1", "b1", "b2", "bb1"}) {
            CHECK_MESSAGE(position(log, "r3") < position(log, child), child);
        }
        CHECK(position(log, "a2") < position(log, "aa1"));
        CHECK(position(log, "b2") < position(log, "bb1"));
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.4 every flag of the subtree is set before any callback runs") {
        cancel_source root;
        cancel_source a(root.token());
        cancel_source aa(a.token());
        cancel_source b(root.token());
        cancel_source bb(b.token());

        struct check_all {
            const std::vector<cancel_token>* all;
            int* calls;
            int* saw_half_cancelled;

            void operator()() const noexcept {
                ++*calls;
                for (const cancel_token& t : *all) {
                    if (!t.cancel_requested()) {
                        ++*saw_half_cancelled;
                    }
                }
            }
        };

        const std::vector<cancel_token> all{root.token(), a.token(), aa.token(), b.token(),
                                            bb.token()};
        int calls = 0;
        int half = 0;
        auto r0 = root.token().on_cancel(check_all{&all, &calls, &half});
        auto r1 = a.token().on_cancel(check_all{&all, &calls, &half});
        auto r2 = aa.token().on_cancel(check_all{&all, &calls, &half});
        auto r3 = b.token().on_cancel(check_all{&all, &calls, &half});
        auto r4 = bb.token().on_cancel(check_all{&all, &calls, &half});

        CHECK(root.request_cancel());
        CHECK(calls == 5);
        CHECK(half == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.4 inside the first callback, the rest of the subtree already "
                      "refuses request_cancel") {
        cancel_source root;
        cancel_source child(root.token());
        cancel_source leaf(child.token());

        struct try_descendants {
            cancel_source* child;
            cancel_source* leaf;
            int* transitions;

            void operator()() const noexcept {
                if (child->request_cancel("from callback")) {
                    ++*transitions;
                }
                if (leaf->request_cancel("from callback")) {
                    ++*transitions;
                }
            }
        };

        int transitions = 0;
        int leaf_calls = 0;
        auto r = root.token().on_cancel(try_descendants{&child, &leaf, &transitions});
        auto rl = leaf.token().on_cancel(bump{&leaf_calls});
        CHECK(root.request_cancel());
        CHECK(transitions == 0);
        CHECK(leaf_calls == 1);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.4 a callback that registers on a descendant during the "
                                    "propagation sees it run exactly once before request_cancel "
                                    "returns") {
        cancel_source root;
        cancel_source child(root.token());
        cancel_source leaf(child.token());
        int late_calls = 0;
        std::optional<bump_registration> late;

        struct register_late {
            std::optional<bump_registration>* late;
            cancel_token leaf;
            int* calls;

            void operator()() const noexcept { late->emplace(leaf, bump{calls}); }
        };

        auto r = root.token().on_cancel(register_late{&late, leaf.token(), &late_calls});
        CHECK(root.request_cancel());
        CHECK(late.has_value());
        CHECK(late_calls == 1);
        late.reset();
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.4 a callback may request cancellation of an unrelated "
                                    "source, which propagates before that call returns") {
        cancel_source first;
        cancel_source second;
        cancel_source second_child(second.token());
        int on_second_child = 0;
        bool nested_true = false;
        bool child_done_on_return = false;

        struct cancel_other {
            cancel_source* other;
            const int* child_calls;
            bool* nested_true;
            bool* child_done_on_return;

            void operator()() const noexcept {
                *nested_true = other->request_cancel();
                *child_done_on_return = *child_calls == 1;
            }
        };

        auto r = first.token().on_cancel(
            cancel_other{&second, &on_second_child, &nested_true, &child_done_on_return});
        auto rc = second_child.token().on_cancel(bump{&on_second_child});
        CHECK(first.request_cancel());
        CHECK(nested_true);
        CHECK(child_done_on_return);
        CHECK(on_second_child == 1);
    }

    // ---------------------------------------------------------------------------------------------
    // 11.5 Callbacks

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.5 registering on an already cancelled token runs the callback "
                      "inline, before on_cancel returns") {
        cancel_source src;
        CHECK(src.request_cancel());
        int ran = 0;
        auto r = src.token().on_cancel(bump{&ran});
        CHECK(ran == 1);
        CHECK_FALSE(src.request_cancel());
        CHECK(ran == 1);

        // The same through the constructor, and on a fresh copy of the token.
        const cancel_token copy = src.token();
        bump_registration r2(copy, bump{&ran});
        CHECK(ran == 2);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.5 callbacks run on the loop thread that requests the "
                                    "cancellation") {
        cancel_source src;
        std::thread::id seen;

        struct record_thread {
            std::thread::id* seen;

            void operator()() const noexcept { *seen = std::this_thread::get_id(); }
        };

        auto r = src.token().on_cancel(record_thread{&seen});
        CHECK(src.request_cancel());
        CHECK(seen == std::this_thread::get_id());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.5 D-14 a cancellation never resumes a waiting task inline") {
        cancel_source src;
        bool resumed = false;
        bool resumed_inside_request = true;
        task_handle<> waiter = rt->spawn([](cancel_token t, bool& resumed) -> task<> {
            co_await t.cancelled();
            resumed = true;
        }(src.token(), resumed));
        task_handle<> canceller =
            rt->spawn([](cancel_source s, const bool& resumed, bool& inside) -> task<> {
                CHECK(s.request_cancel());
                inside = resumed;
                co_await yield();
            }(src, resumed, resumed_inside_request));
        REQUIRE(pump(*this, [&] { return waiter.done() && canceller.done(); }));
        CHECK_FALSE(resumed_inside_request);
        CHECK(resumed);
        CHECK_FALSE(waiter.cancelled());

        // The same from the loop thread outside any task.
        cancel_source src2;
        bool parked = false;
        bool resumed2 = false;
        task_handle<> waiter2 =
            rt->spawn([](cancel_token t, bool& parked, bool& resumed) -> task<> {
                parked = true;
                co_await t.cancelled();
                resumed = true;
            }(src2.token(), parked, resumed2));
        REQUIRE(pump(*this, [&] { return parked; }));
        CHECK(src2.request_cancel());
        CHECK_FALSE(resumed2);
        REQUIRE(pump(*this, [&] { return waiter2.done(); }));
        CHECK(resumed2);
    }

    // ---------------------------------------------------------------------------------------------
    // 11.6 Unregistering

    TEST_CASE_FIXTURE(loop_fixture, "11.6 a destroyed registration never runs") {
        cancel_source src;
        int gone = 0;
        int kept = 0;
        auto r_kept1 = src.token().on_cancel(bump{&kept});
        { auto r_gone = src.token().on_cancel(bump{&gone}); }
        std::optional<bump_registration> r_gone2;
        r_gone2.emplace(src.token(), bump{&gone});
        auto r_kept2 = src.token().on_cancel(bump{&kept});
        r_gone2.reset();

        CHECK(src.request_cancel());
        CHECK(gone == 0);
        CHECK(kept == 2);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.6 a callback that unregisters a not yet run callback of the "
                      "same propagation prevents it") {
        cancel_source parent;
        cancel_source child(parent.token());
        int same_token = 0;
        int on_child = 0;
        int first_calls = 0;
        std::optional<bump_registration> later_same_token;
        std::optional<bump_registration> later_on_child;

        struct unregister_others {
            std::optional<bump_registration>* a;
            std::optional<bump_registration>* b;
            int* calls;

            void operator()() const noexcept {
                ++*calls;
                a->reset();
                b->reset();
            }
        };

        auto first = parent.token().on_cancel(
            unregister_others{&later_same_token, &later_on_child, &first_calls});
        later_same_token.emplace(parent.token(), bump{&same_token});
        later_on_child.emplace(child.token(), bump{&on_child});

        CHECK(parent.request_cancel());
        CHECK(first_calls == 1);
        CHECK(same_token == 0);
        CHECK(on_child == 0);
        CHECK(child.cancel_requested());
    }

    struct destroy_self {
        std::optional<cancel_callback<destroy_self>>* self;
        int* calls;

        void operator()() const noexcept {
            int* n = calls;
            self->reset(); // destroys this very object: touch no member afterwards
            ++*n;
        }
    };

    TEST_CASE_FIXTURE(loop_fixture, "11.6 a callback may destroy its own registration") {
        cancel_source src;
        int calls = 0;
        int after = 0;
        std::optional<cancel_callback<destroy_self>> self;
        self.emplace(src.token(), destroy_self{&self, &calls});
        auto r_after = src.token().on_cancel(bump{&after});

        CHECK(src.request_cancel());
        CHECK(calls == 1);
        CHECK(after == 1);
        CHECK_FALSE(self.has_value());
    }

    struct destroy_source_and_self {
        std::optional<cancel_source>* source;
        std::optional<cancel_callback<destroy_source_and_self>>* self;
        int* calls;

        void operator()() const noexcept {
            std::optional<cancel_source>* s = source;
            int* n = calls;
            self->reset(); // the last token reference besides the source
            s->reset();    // the last reference: the node goes away during its own propagation
            ++*n;
        }
    };

    TEST_CASE_FIXTURE(loop_fixture, "11.6 a callback may destroy its own source and registration "
                                    "while the propagation continues below it") {
        cancel_source grandparent;
        std::optional<cancel_source> parent;
        parent.emplace(grandparent.token());
        cancel_source child(parent->token());
        int calls = 0;
        int on_child = 0;
        int on_grandparent = 0;
        std::optional<cancel_callback<destroy_source_and_self>> self;
        self.emplace(parent->token(), destroy_source_and_self{&parent, &self, &calls});
        auto r_child = child.token().on_cancel(bump{&on_child});
        auto r_gp = grandparent.token().on_cancel(bump{&on_grandparent});

        CHECK(grandparent.request_cancel());
        CHECK(calls == 1);
        CHECK(on_grandparent == 1);
        CHECK(on_child == 1);
        CHECK_FALSE(parent.has_value());
        CHECK(child.cancel_requested());
    }

    struct destroy_other_node {
        std::optional<cancel_source>* source;
        std::optional<bump_registration>* registration;

        void operator()() const noexcept {
            registration->reset();
            source->reset();
        }
    };

    TEST_CASE_FIXTURE(loop_fixture, "11.6 a callback may destroy another source of the same "
                                    "propagation before its turn, which then runs nothing") {
        cancel_source root;
        std::optional<cancel_source> victim;
        victim.emplace(root.token());
        cancel_source victim_child(victim->token());
        cancel_source sibling(root.token());
        int on_victim = 0;
        int on_victim_child = 0;
        int on_sibling = 0;
        std::optional<bump_registration> r_victim;
        auto killer = root.token().on_cancel(destroy_other_node{&victim, &r_victim});
        r_victim.emplace(victim->token(), bump{&on_victim});
        auto r_vc = victim_child.token().on_cancel(bump{&on_victim_child});
        auto r_s = sibling.token().on_cancel(bump{&on_sibling});

        CHECK(root.request_cancel());
        CHECK(on_victim == 0);
        CHECK(on_victim_child == 1);
        CHECK(on_sibling == 1);
        CHECK(victim_child.cancel_requested());
        CHECK_FALSE(victim.has_value());
    }

    // ---------------------------------------------------------------------------------------------
    // 11.7 Memory: dropped children and registrations leave their parent at once

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.7 a long-lived parent with 1,000,000 short-lived children and "
                      "registrations does not grow and still propagates correctly") {
        cancel_source parent;
        int dead_calls = 0;
        // Warm up, so that allocator caches and lazily created state are in place before measuring.
        for (int i = 0; i < 1000; ++i) {
            cancel_source child(parent.token());
            auto r = child.token().on_cancel(bump{&dead_calls});
            auto rp = parent.token().on_cancel(bump{&dead_calls});
        }
        const std::size_t before = heap_in_use();
        for (int i = 0; i < 1'000'000; ++i) {
            cancel_source child(parent.token());
            cancel_source grandchild(child.token());
            auto r = grandchild.token().on_cancel(bump{&dead_calls});
            auto rp = parent.token().on_cancel(bump{&dead_calls});
        }
        const std::size_t after = heap_in_use();
        // A leak of even one pointer per child would be 8 MB; a leaked node is far larger.
        CHECK(after <= before + (std::size_t(1) << 20));

        int live_calls = 0;
        int parent_calls = 0;
        cancel_source live1(parent.token());
        cancel_source live2(parent.token());
        cancel_source live3(live2.token());
        auto r1 = live1.token().on_cancel(bump{&live_calls});
        auto r2 = live2.token().on_cancel(bump{&live_calls});
        auto r3 = live3.token().on_cancel(bump{&live_calls});
        auto rp = parent.token().on_cancel(bump{&parent_calls});
        CHECK(parent.request_cancel());
        CHECK(dead_calls == 0);
        CHECK(live_calls == 3);
        CHECK(parent_calls == 1);
        CHECK(live3.cancel_requested());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.7 removing children in any order leaves the others linked") {
        constexpr int n = 100'000;
        cancel_source parent;
        std::vector<std::optional<cancel_source>> children(n);
        for (auto& c : children) {
            c.emplace(parent.token());
        }
        // Drop every other child front to back, then every fourth of the rest back to front.
        for (int i = 0; i < n; i += 2) {
            children[i].reset();
        }
        for (int i = n - 1; i >= 0; i -= 4) {
            children[i].reset();
        }
        CHECK(parent.request_cancel());
        int remaining = 0;
        int not_cancelled = 0;
        for (auto& c : children) {
            if (c) {
                ++remaining;
                if (!c->cancel_requested()) {
                    ++not_cancelled;
                }
            }
        }
        CHECK(remaining == n / 4);
        CHECK(not_cancelled == 0);
    }

    // ---------------------------------------------------------------------------------------------
    // 11.8 Deep and wide trees

    TEST_CASE("11.8 a chain 100,000 deep cancels completely without recursion") {
        constexpr int depth = 100'000;

        struct results {
            int calls = 0;
            int out_of_order = 0;
            bool leaf_cancelled = false;
            bool second_request = true;
            bool born_cancelled = false;
        } res;

        struct record_depth {
            std::vector<int>* order;
            int depth;

            void operator()() const noexcept { order->push_back(depth); }
        };

        auto body = [&res] {
            loop_fixture f;
            std::vector<int> order;
            order.reserve(depth + 1);
            {
                std::vector<cancel_source> chain;
                chain.reserve(depth + 1);
                chain.emplace_back();
                for (int i = 0; i < depth; ++i) {
                    chain.emplace_back(chain.back().token());
                }
                auto regs =
                    std::make_unique<std::optional<cancel_callback<record_depth>>[]>(depth + 1);
                for (int i = depth; i >= 0; --i) { // registration order must not matter
                    regs[i].emplace(chain[i].token(), record_depth{&order, i});
                }
                chain.front().request_cancel();
                res.leaf_cancelled = chain.back().cancel_requested();
                res.second_request = chain[depth / 2].request_cancel();
                cancel_source below_leaf(chain.back().token());
                res.born_cancelled = below_leaf.cancel_requested();
                regs.reset();
                // The chain is destroyed root first: no node may recurse into its descendants.
            }
            res.calls = static_cast<int>(order.size());
            for (std::size_t i = 1; i < order.size(); ++i) {
                if (order[i] < order[i - 1]) {
                    ++res.out_of_order;
                }
            }
        };
        on_small_stack(body);
        CHECK(res.leaf_cancelled);
        CHECK_FALSE(res.second_request);
        CHECK(res.born_cancelled);
        CHECK(res.calls == depth + 1);
        CHECK(res.out_of_order == 0);
    }

    TEST_CASE("11.8 a chain 100,000 deep destroyed leaf first needs no recursion either") {
        constexpr int depth = 100'000;
        bool leaf_cancelled = false;
        auto body = [&leaf_cancelled] {
            loop_fixture f;
            std::vector<std::optional<cancel_source>> chain(depth + 1);
            chain[0].emplace();
            for (int i = 1; i <= depth; ++i) {
                chain[i].emplace(chain[i - 1]->token());
            }
            for (int i = depth; i > depth / 2; --i) {
                chain[i].reset();
            }
            chain[0]->request_cancel();
            leaf_cancelled = chain[depth / 2]->cancel_requested();
            for (int i = depth / 2; i >= 0; --i) {
                chain[i].reset();
            }
        };
        on_small_stack(body);
        CHECK(leaf_cancelled);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.8 a tree 1,000,000 wide cancels every child, parent first") {
        constexpr int width = 1'000'000;

        struct after_parent {
            const bool* parent_ran;
            int* calls;
            int* too_early;

            void operator()() const noexcept {
                ++*calls;
                if (!*parent_ran) {
                    ++*too_early;
                }
            }
        };

        struct set_true {
            bool* flag;

            void operator()() const noexcept { *flag = true; }
        };

        cancel_source parent;
        bool parent_ran = false;
        int calls = 0;
        int too_early = 0;
        std::vector<cancel_source> children;
        children.reserve(width);
        auto regs = std::make_unique<std::optional<cancel_callback<after_parent>>[]>(width);
        for (int i = 0; i < width; ++i) {
            children.emplace_back(parent.token());
            regs[i].emplace(children.back().token(), after_parent{&parent_ran, &calls, &too_early});
        }
        auto rp = parent.token().on_cancel(set_true{&parent_ran}); // registered last on purpose

        CHECK(parent.request_cancel());
        CHECK(calls == width);
        CHECK(too_early == 0);
        int not_cancelled = 0;
        for (const cancel_source& c : children) {
            if (!c.cancel_requested()) {
                ++not_cancelled;
            }
        }
        CHECK(not_cancelled == 0);
        regs.reset();
    }

    // ---------------------------------------------------------------------------------------------
    // 11.9 co_await token.cancelled()

    TEST_CASE_FIXTURE(loop_fixture, "11.9 cancelled() on an already cancelled token completes "
                                    "without suspending") {
        cancel_source src;
        CHECK(src.request_cancel());
        bool other_ran = false;
        bool other_ran_before_resume = true;
        task_handle<> a = rt->spawn([](cancel_token t, const bool& other, bool& seen) -> task<> {
            co_await t.cancelled();
            seen = other;
        }(src.token(), other_ran, other_ran_before_resume));
        task_handle<> b = rt->spawn(set_flag(other_ran)); // would run first if `a` suspended
        REQUIRE(pump(*this, [&] { return a.done() && b.done(); }));
        CHECK_FALSE(a.cancelled());
        CHECK_FALSE(other_ran_before_resume);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.9 cancelled() on an already cancelled token does not raise "
                                    "even in a cancelled scope, because it does not suspend") {
        cancel_source src;
        CHECK(src.request_cancel());

        struct probe {
            bool passed_wait = false;
            bool raised_at_yield = false;
        } p;

        std::optional<unit> r = run([](cancel_token t, probe& p) -> task<std::optional<unit>> {
            co_return co_await move_on_after(0ms, [](cancel_token t, probe& p) -> task<> {
                co_await t.cancelled(); // result available: not a cancellation point
                p.passed_wait = true;
                try {
                    co_await yield();
                } catch (const cancelled_error&) {
                    p.raised_at_yield = true;
                    throw;
                }
            }(t, p));
        }(src.token(), p));
        CHECK_FALSE(r.has_value());
        CHECK(p.passed_wait);
        CHECK(p.raised_at_yield);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.9 cancelled() completes when the token becomes cancelled") {
        cancel_source src;
        const deadline start = now();
        std::vector<long long> woke_at(3, -1);
        std::vector<task_handle<>> waiters;
        waiters.reserve(3);
        for (int i = 0; i < 3; ++i) {
            waiters.push_back(
                rt->spawn([](cancel_token t, long long& at, deadline start) -> task<> {
                    co_await t.cancelled();
                    at = (loop_clock::now() - start).count();
                }(src.token(), woke_at[i], start)));
        }
        run(cancel_source_after(7ms, src, "go"));
        REQUIRE(pump(*this,
                     [&] { return waiters[0].done() && waiters[1].done() && waiters[2].done(); }));
        for (int i = 0; i < 3; ++i) {
            CHECK(woke_at[i] == 7);
            CHECK_FALSE(waiters[i].cancelled());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.9 cancelled() is a cancellation point of the awaiting task "
                                    "and stops listening when it raises") {
        cancel_source src;
        const deadline start = now();
        bool timed_out = false;
        run([](cancel_token t, bool& timed_out) -> task<> {
            try {
                co_await timeout(10ms, wait_token(t));
            } catch (const timeout_error&) {
                timed_out = true;
            }
        }(src.token(), timed_out));
        CHECK(timed_out);
        CHECK((now() - start) == 10ms);
        CHECK_FALSE(src.cancel_requested());
        CHECK(src.request_cancel()); // nobody listens any more; nothing runs, nothing breaks

        // Cancelled through the task's handle while waiting.
        cancel_source src2;
        task_handle<> h = rt->spawn(wait_token(src2.token()));
        run(cancel_task_after(3ms, h, "handle"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(h.cancelled());
        CHECK(cancel_message_of(*this, h) == "handle");
        CHECK_FALSE(src2.cancel_requested());
        CHECK(src2.request_cancel());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.9 cancelled() in an already cancelled scope raises without "
                                    "waiting") {
        cancel_source src;
        const deadline start = now();
        std::optional<unit> r = run([](cancel_token t) -> task<std::optional<unit>> {
            co_return co_await move_on_after(0ms, wait_token(t));
        }(src.token()));
        CHECK_FALSE(r.has_value());
        CHECK(now() == start);
    }

    // ---------------------------------------------------------------------------------------------
    // 11.10 run_until_cancelled

    task<int> value_after(loop_clock::duration d, int v, bool& started, counted /*held*/) {
        started = true;
        co_await sleep(d);
        co_return v;
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.10 run_until_cancelled returns the result when the operation "
                      "completes first") {
        cancel_source src;
        bool started = false;
        const deadline start = now();
        std::optional<int> r = run([](cancel_token t, bool& started) -> task<std::optional<int>> {
            auto op = value_after(5ms, 42, started, counted{});
            co_return co_await run_until_cancelled(t, std::move(op));
        }(src.token(), started));
        REQUIRE(r.has_value());
        CHECK(*r == 42);
        CHECK(started);
        CHECK((now() - start) == 5ms);
        CHECK_FALSE(src.cancel_requested());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.10 run_until_cancelled returns empty when the token is "
                                    "cancelled first, and the caller carries on uncancelled") {
        cancel_source src;
        bool started = false;
        bool slept_after = false;
        const deadline start = now();
        task_handle<> canceller = rt->spawn(cancel_source_after(3ms, src, "stop"));
        std::optional<int> r =
            run([](cancel_token t, bool& started, bool& slept_after) -> task<std::optional<int>> {
                auto op = value_after(1h, 42, started, counted{});
                std::optional<int> v = co_await run_until_cancelled(t, std::move(op));
                co_await sleep(2ms); // the token's cancellation is not the caller's
                slept_after = true;
                co_return v;
            }(src.token(), started, slept_after));
        CHECK_FALSE(r.has_value());
        CHECK(started);
        CHECK(slept_after);
        CHECK((now() - start) == 5ms);
        CHECK(canceller.done());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.10 run_until_cancelled on a cancelled token returns empty "
                                    "without starting the operation") {
        cancel_source src;
        CHECK(src.request_cancel());
        bool started = false;
        const deadline start = now();
        std::optional<int> r = run([](cancel_token t, bool& started) -> task<std::optional<int>> {
            auto op = value_after(5ms, 42, started, counted{});
            co_return co_await run_until_cancelled(t, std::move(op));
        }(src.token(), started));
        CHECK_FALSE(r.has_value());
        CHECK_FALSE(started);
        CHECK(now() == start);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.10 a completion recorded in the same iteration as the token's "
                      "cancellation wins") {
        // The operation's sleep and the canceller's timeout scope fall due in the same deadline
        // pass, the sleep first: its completion is recorded before the token is cancelled.
        cancel_source src;
        bool started = false;
        const deadline start = now();
        task_handle<std::optional<int>> op_task =
            rt->spawn([](cancel_token t, bool& started) -> task<std::optional<int>> {
                auto op = value_after(5ms, 42, started, counted{});
                co_return co_await run_until_cancelled(t, std::move(op));
            }(src.token(), started));
        task_handle<> canceller = rt->spawn([](cancel_source s) -> task<> {
            co_await move_on_after(5ms, [](cancel_source s) -> task<> {
                auto relay =
                    current_token().on_cancel([s]() mutable noexcept { s.request_cancel(); });
                co_await sleep(1h);
            }(s));
        }(src));
        REQUIRE(pump(*this, [&] { return op_task.done() && canceller.done(); }));
        CHECK((now() - start) == 5ms);
        CHECK(src.cancel_requested());
        CHECK(started);
        CHECK(run(await_value(op_task)) == std::optional<int>(42));
    }

    // ---------------------------------------------------------------------------------------------
    // 11.11 drop_guard

    TEST_CASE_FIXTURE(loop_fixture, "11.11 a drop guard cancels its source when destroyed") {
        cancel_source src;
        int ran = 0;
        auto r = src.token().on_cancel(bump{&ran});
        {
            drop_guard g(src);
            CHECK(g.armed());
            CHECK_FALSE(src.cancel_requested());
        }
        CHECK(src.cancel_requested());
        CHECK(ran == 1);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.11 a disarmed drop guard cancels nothing") {
        cancel_source src;
        int ran = 0;
        auto r = src.token().on_cancel(bump{&ran});
        {
            drop_guard g(src);
            g.disarm();
            CHECK_FALSE(g.armed());
        }
        CHECK_FALSE(src.cancel_requested());
        CHECK(ran == 0);
        CHECK(src.request_cancel());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.11 a drop guard keeps its source alive and is harmless on a "
                      "cancelled source") {
        cancel_token tok;
        {
            std::optional<drop_guard> g;
            {
                cancel_source src;
                tok = src.token();
                g.emplace(src);
            } // the only other source handle is gone
            CHECK_FALSE(tok.cancel_requested());
        }
        CHECK(tok.cancel_requested());

        cancel_source done;
        CHECK(done.request_cancel());
        { drop_guard g(done); }
        CHECK(done.cancel_requested());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.11 a drop guard in a task cancels the source when the task "
                                    "unwinds with an error") {
        cancel_source src;
        const deadline start = now();
        long long woke_at = -1;
        task_handle<> failing = rt->spawn([](cancel_source s) -> task<> {
            drop_guard g(s);
            co_await sleep(5ms);
            throw std::runtime_error("boom");
        }(src));
        task_handle<> waiter =
            rt->spawn([](cancel_token t, long long& at, deadline start) -> task<> {
                co_await t.cancelled();
                at = (loop_clock::now() - start).count();
            }(src.token(), woke_at, start));
        REQUIRE(pump(*this, [&] { return failing.done() && waiter.done(); }));
        CHECK(woke_at == 5);
        CHECK_THROWS_AS(run(await_handle(failing)), std::runtime_error);
    }

    // ---------------------------------------------------------------------------------------------
    // 11.12 Tasks bound to a token

    TEST_CASE_FIXTURE(loop_fixture, "11.12 cancelling the token cancels a task spawned with it") {
        cancel_source src;
        bool started = false;
        task_handle<> h = rt->spawn(mark_then_sleep(started, counted{}), src.token());
        const deadline start = now();
        run(cancel_source_after(4ms, src, "token"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(started);
        CHECK(h.cancelled());
        CHECK((now() - start) == 4ms);
        CHECK(cancel_message_of(*this, h) == "token");
        CHECK_FALSE(h.cancel("late")); // done: changes nothing (3.1)
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.12 cancelling a task spawned with a token does not cancel "
                                    "the token") {
        cancel_source src;
        int on_token = 0;
        auto r = src.token().on_cancel(bump{&on_token});
        task_handle<> victim = rt->spawn(sleep_for(1h), src.token());
        task_handle<> sibling = rt->spawn(sleep_for(10ms), src.token());
        run(cancel_task_after(2ms, victim, "only me"));
        REQUIRE(pump(*this, [&] { return victim.done() && sibling.done(); }));
        CHECK(victim.cancelled());
        CHECK(cancel_message_of(*this, victim) == "only me");
        CHECK_FALSE(sibling.cancelled());
        CHECK_FALSE(src.cancel_requested());
        CHECK(on_token == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.12 2.7 a task spawned with an already cancelled token never "
                      "runs its body") {
        cancel_source src;
        CHECK(src.request_cancel("before spawn"));
        bool started = false;
        task_handle<> h = rt->spawn(mark_then_sleep(started, counted{}), src.token());
        CHECK_FALSE(h.cancel("ignored")); // its scope is already cancelled by inheritance (3.2)
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK_FALSE(started);
        CHECK(h.cancelled());
        CHECK(cancel_message_of(*this, h) == "before spawn");
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.12 2.7 a token cancelled after spawn but before the first "
                                    "step means the body never runs") {
        cancel_source src;
        bool started = false;
        task_handle<> h = rt->spawn(mark_then_sleep(started, counted{}), src.token());
        CHECK(src.request_cancel("queued"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK_FALSE(started);
        CHECK(h.cancelled());
        CHECK(cancel_message_of(*this, h) == "queued");
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.12 the token's cancellation is level-triggered: every "
                                    "cancellation point raises until the task ends") {
        cancel_source src;
        task_handle<int> h = rt->spawn(
            []() -> task<int> {
                int deliveries = 0;
                for (int i = 0; i < 3; ++i) {
                    try {
                        co_await sleep(1h);
                    } catch (const cancelled_error&) {
                        ++deliveries;
                    }
                }
                co_return deliveries; // swallowing is allowed; the value is kept (2.3)
            }(),
            src.token());
        const deadline start = now();
        run(cancel_source_after(6ms, src, "level"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK((now() - start) == 6ms);
        CHECK_FALSE(h.cancelled());
        CHECK(run(await_value(h)) == 3);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.12 a running task's cancel() returns false once its token "
                                    "has cancelled it") {
        cancel_source src;
        bool cancel_result = true;
        task_handle<> h = rt->spawn(sleep_for(1h), src.token());
        run([](cancel_source s, task_handle<> h, bool& result) -> task<> {
            co_await sleep(1ms);
            s.request_cancel("token first");
            result = h.cancel("handle second");
        }(src, h, cancel_result));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK_FALSE(cancel_result);
        CHECK(cancel_message_of(*this, h) == "token first");
    }

    // ---------------------------------------------------------------------------------------------
    // 11.13 current_token()

    TEST_CASE_FIXTURE(loop_fixture, "11.13 current_token() of a task is cancelled exactly when a "
                                    "cancellation point would raise") {
        struct probe {
            bool can_be_cancelled = false;
            bool before = true;
            bool callback_ran = false;
            bool in_handler = false;
            bool yield_raised = false;
        } p;

        task_handle<> h = rt->spawn([](probe& p) -> task<> {
            cancel_token t = current_token();
            p.can_be_cancelled = t.can_be_cancelled();
            p.before = t.cancel_requested();
            auto r = t.on_cancel([&p]() noexcept { p.callback_ran = true; });
            try {
                co_await sleep(1h);
            } catch (const cancelled_error&) {
                p.in_handler = current_token().cancel_requested();
            }
            try {
                co_await yield();
            } catch (const cancelled_error&) {
                p.yield_raised = true;
                throw;
            }
        }(p));
        run(cancel_task_after(5ms, h, "x"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(p.can_be_cancelled);
        CHECK_FALSE(p.before);
        CHECK(p.callback_ran);
        CHECK(p.in_handler);
        CHECK(p.yield_raised);
        CHECK(h.cancelled());
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.13 current_token() of a task spawned with a token follows "
                                    "the token") {
        cancel_source src;

        struct probe {
            bool before = true;
            bool after = false;
        } p;

        task_handle<> h = rt->spawn(
            [](probe& p) -> task<> {
                p.before = current_token().cancel_requested();
                try {
                    co_await sleep(1h);
                } catch (const cancelled_error&) {
                    p.after = current_token().cancel_requested();
                    throw;
                }
            }(p),
            src.token());
        run(cancel_source_after(5ms, src, "t"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK_FALSE(p.before);
        CHECK(p.after);
    }

    struct shield_probe {
        bool outer_cancelled = false;
        bool inside_before = true;
        bool inside_after = true;
        bool inside_callback = false;
        bool inside_slept = false;
        bool after_shield = false;
        bool reached_end = false;
        long long slept_until = -1;
    };

    task<> shielded_body(shield_probe & p, deadline start) {
        cancel_token t = current_token();
        p.inside_before = t.cancel_requested();
        auto r = t.on_cancel([&p]() noexcept { p.inside_callback = true; });
        co_await sleep(10ms); // not interrupted by the outer cancellation
        p.inside_slept = true;
        p.inside_after = t.cancel_requested();
        p.slept_until = (loop_clock::now() - start).count();
    }

    /// Enters shielded(shielded_body) (after a first sleep that the outer cancellation
    /// interrupts when `cancelled_before_entry`), then records the token and passes a point.
    task<> enter_shield(shield_probe & p, deadline start, bool cancelled_before_entry) {
        if (cancelled_before_entry) {
            try {
                co_await sleep(1h);
            } catch (const cancelled_error&) {
                p.outer_cancelled = current_token().cancel_requested();
            }
        }
        co_await shielded(shielded_body(p, start));
        p.after_shield = current_token().cancel_requested();
        co_await yield(); // raises again: the task's scope is still cancelled
        p.reached_end = true;
    }

    /// Runs `enter_shield` as a task cancelled with `message` after 5 ms and checks what holds
    /// whenever the cancellation arrives: inside the shield the token is not cancelled, its
    /// callback does not run and the 10 ms sleep completes; after it the token is cancelled,
    /// the next point raises and the task ends cancelled. Returns the task's handle.
    task_handle<> check_shield_hides_cancellation(loop_fixture & f, shield_probe & p,
                                                  bool cancelled_before_entry,
                                                  const std::string& message) {
        task_handle<> h = f.rt->spawn(enter_shield(p, f.now(), cancelled_before_entry));
        f.run(cancel_task_after(5ms, h, message));
        REQUIRE(pump(f, [&] { return h.done(); }));
        CHECK_FALSE(p.inside_before);
        CHECK_FALSE(p.inside_callback);
        CHECK(p.inside_slept);
        CHECK_FALSE(p.inside_after);
        CHECK(p.after_shield);
        CHECK_FALSE(p.reached_end);
        CHECK(h.cancelled());
        return h;
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.13 8b inside shielded() the token is not cancelled by an "
                                    "outer scope cancelled before entry") {
        shield_probe p;
        check_shield_hides_cancellation(*this, p, true, "outer");
        CHECK(p.outer_cancelled);
        CHECK(p.slept_until == 15);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.13 8b a shielded token does not see an outer cancellation "
                                    "that arrives while inside") {
        shield_probe p;
        const task_handle<> h = check_shield_hides_cancellation(*this, p, false, "while shielded");
        CHECK(p.slept_until == 10);
        CHECK(cancel_message_of(*this, h) == "while shielded");
    }

    struct timeout_probe {
        bool differs_from_outer = false;
        bool inner_before = true;
        bool inner_callback = false;
        bool inner_in_handler = false;
        bool outer_after = true;
        long long callback_at = -1;
    };

    task<> timeout_body(timeout_probe & p, cancel_token outer, deadline start) {
        cancel_token t = current_token();
        p.differs_from_outer = !(t == outer);
        p.inner_before = t.cancel_requested();
        auto r = t.on_cancel([&p, start]() noexcept {
            p.inner_callback = true;
            p.callback_at = (loop_clock::now() - start).count();
        });
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
            p.inner_in_handler = current_token().cancel_requested();
            throw;
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.13 inside a timeout scope current_token() follows that "
                                    "scope") {
        timeout_probe p;
        const deadline start = now();
        std::optional<unit> r =
            run([](timeout_probe& p, deadline start) -> task<std::optional<unit>> {
                cancel_token outer = current_token();
                std::optional<unit> v = co_await move_on_after(10ms, timeout_body(p, outer, start));
                p.outer_after = current_token().cancel_requested();
                co_return v;
            }(p, start));
        CHECK_FALSE(r.has_value());
        CHECK(p.differs_from_outer);
        CHECK_FALSE(p.inner_before);
        CHECK(p.inner_callback);
        CHECK(p.callback_at == 10);
        CHECK(p.inner_in_handler);
        CHECK_FALSE(p.outer_after);
    }

    TEST_CASE_FIXTURE(loop_fixture, "11.13 D-5 the token of a timeout scope expired at entry is "
                                    "already cancelled") {
        struct probe {
            bool at_entry = false;
            bool outer = true;
        } p;

        std::optional<unit> r = run([](probe& p) -> task<std::optional<unit>> {
            std::optional<unit> v = co_await move_on_after(0ms, [](probe& p) -> task<> {
                p.at_entry = current_token().cancel_requested();
                co_await yield();
            }(p));
            p.outer = current_token().cancel_requested();
            co_return v;
        }(p));
        CHECK_FALSE(r.has_value());
        CHECK(p.at_entry);
        CHECK_FALSE(p.outer);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "11.13 an enclosing cancellation reaches the token of a timeout "
                      "scope nested inside") {
        cancel_source src;
        timeout_probe p;
        const deadline start = now();
        task_handle<> h = rt->spawn(
            [](timeout_probe& p, deadline start) -> task<> {
                cancel_token outer = current_token();
                co_await timeout(1h, timeout_body(p, outer, start));
            }(p, start),
            src.token());
        run(cancel_source_after(3ms, src, "outer"));
        REQUIRE(pump(*this, [&] { return h.done(); }));
        CHECK(p.inner_callback);
        CHECK(p.callback_at == 3);
        CHECK(p.inner_in_handler);
        CHECK(h.cancelled()); // not a timeout_error: the token scope owns it (D-3)
        CHECK(cancel_message_of(*this, h) == "outer");
    }

} // TEST_SUITE
