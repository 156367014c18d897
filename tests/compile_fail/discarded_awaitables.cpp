// SPDX-License-Identifier: MIT
// Each CASE discards an awaitable or a task (a forgotten co_await); check_warnings.py compiles
// every case with -Werror and expects a nodiscard diagnostic, and CASE 0 (everything awaited)
// to compile cleanly.
#include <array>
#include <csignal>
#include <span>
#include <string>

#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<int> work() {
    co_return 1;
}

task<void> body(timeout_scope& /*s*/) {
    co_return;
}

task<void> discards(timer& t, signal_set& signals, event& e, queue<int>& q, mutex& m, semaphore& s,
                    stream& st, fs::file& f, task_handle<int>& h) {
    std::array<char, 4> buf{};
#if CASE == 0
    co_await sleep(1ms);
    co_await yield();
    co_await checkpoint();
    (void)co_await work();
    (void)co_await shielded(work());
    (void)co_await timeout(1s, work());
    co_await move_on_after(1s, body);
    (void)co_await t.tick();
    (void)co_await signals.wait();
    co_await e.wait();
    (void)co_await q.get();
    co_await q.put(1);
    (void)co_await m.lock();
    (void)co_await s.acquire();
    (void)co_await st.read_some(buf);
    co_await st.write(std::string("x"));
    (void)co_await f.read(buf);
    (void)co_await h;
    (void)co_await gather(work(), work());
    (void)co_await wait_for(work(), 1s);
    (void)co_await to_thread([] { return 1; });
#elif CASE == 1
    sleep(1ms);
#elif CASE == 2
    yield();
#elif CASE == 3
    checkpoint();
#elif CASE == 4
    work();
#elif CASE == 5
    shielded(work());
#elif CASE == 6
    timeout(1s, work());
#elif CASE == 7
    move_on_after(1s, body);
#elif CASE == 8
    t.tick();
#elif CASE == 9
    signals.wait();
#elif CASE == 10
    e.wait();
#elif CASE == 11
    q.get();
#elif CASE == 12
    q.put(1);
#elif CASE == 13
    m.lock();
#elif CASE == 14
    s.acquire();
#elif CASE == 15
    st.read_some(buf);
#elif CASE == 16
    st.write(std::string("x"));
#elif CASE == 17
    f.read(buf);
#elif CASE == 18
    gather(work(), work());
#elif CASE == 19
    wait_for(work(), 1s);
#elif CASE == 20
    to_thread([] { return 1; });
#elif CASE == 21
    shield(work());
#elif CASE == 22
    st.close();
#endif
}

int main() {
}
