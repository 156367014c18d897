// SPDX-License-Identifier: MIT
// Every ```cpp example in the comments of runtime/include/uvasync/ headers, compiled and run:
// examples/check_doc_blocks.py checks that each header block is an excerpt of this file (line
// by line, indentation aside), so an example that is copied from a header compiles and runs.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

namespace {

struct page {
    std::string body;
};

task<page> fetch(std::string url) {
    co_await sleep(1ms);
    co_return page{"<html>" + url + "</html>"};
}

void use(std::size_t index, const page& p) {
    std::printf("as_completed: page %zu has %zu bytes\n", index, p.body.size());
}

std::uint64_t checksum(const std::vector<char>& bytes) {
    return std::accumulate(bytes.begin(), bytes.end(), std::uint64_t{0},
                           [](std::uint64_t a, char c) { return a * 31 + std::uint8_t(c); });
}

// task_group.hpp
task<> task_group_example() {
    std::string a = "a";
    std::string b = "b";
    co_await task_group::run([&](task_group& g) -> task<> {
        g.spawn(fetch(a));
        g.spawn(fetch(b));
        co_return; // a body with no co_await still needs one, or it is not a coroutine
    });
}

// as_completed.hpp
task<> as_completed_example() {
    std::vector<task<page>> fetches;
    fetches.push_back(fetch("one"));
    fetches.push_back(fetch("two"));
    co_await as_completed(std::move(fetches), [&](completions<page>& done) -> task<> {
        while (auto c = co_await done.next()) {
            if (c->result) {
                use(c->index, c->result.value());
                co_return; // enough
            }
        }
    });
}

} // namespace

// task_local.hpp (at namespace scope, as in the header)
struct request {
    std::string id;
};

task<> serve_parts(task_group& g);

// clang-format off
inline task_local<std::string> request_id;

task<> handle(request r) {
    auto scope = request_id.scoped(r.id); // this task and what it spawns from here
    co_await task_group::run(serve_parts); // children see r.id
} // restored

// clang-format on

task<> serve_part(std::string part) {
    co_await sleep(1ms);
    std::printf("task_local: %s served for %s\n", part.c_str(), request_id.get().c_str());
}

task<> serve_parts(task_group& g) {
    g.spawn(serve_part("head"));
    g.spawn(serve_part("body"));
    co_return;
}

namespace {

// barrier.hpp
task<> barrier_party(barrier& b) {
    std::size_t i = co_await b.arrive_and_wait();
    std::printf("barrier: arrived as %zu\n", i);
}

// condition.hpp and mutex.hpp
task<> condition_example(mutex& m, condition& cv, std::vector<int>& items) {
    mutex::guard g = co_await m.lock();
    co_await cv.wait(g, [&] { return !items.empty(); });
    std::printf("condition: %zu item(s)\n", items.size());
}

task<> mutex_example(mutex& m, condition& cv, std::vector<int>& items) {
    mutex::guard g = co_await m.lock(); // released when g goes out of scope
    items.push_back(1);
    cv.notify_all();
}

// dns.hpp
task<> dns_example() {
    uvasync::address_list addrs = co_await uvasync::resolve("localhost", "8080");
    for (const uvasync::socket_address& a : addrs) {
        std::puts(a.to_string().c_str());
    }
}

// work.hpp
task<> work_example() {
    std::vector<char> bytes(1000, 'x');
    std::uint64_t sum = co_await uvasync::to_thread([&] { return checksum(bytes); });
    std::printf("to_thread: checksum %llu\n", static_cast<unsigned long long>(sum));
}

task<> all_examples() {
    co_await task_group_example();
    co_await as_completed_example();
    request r{"req-1"}; // named first: g++ 12 destroys an aggregate temporary written inside
    co_await handle(std::move(r)); // a co_await twice (docs/toolchain.md section 2)
    barrier b(2);
    co_await gather(barrier_party(b), barrier_party(b));
    mutex m;
    condition cv(m);
    std::vector<int> items;
    co_await gather(condition_example(m, cv, items), mutex_example(m, cv, items));
    co_await dns_example();
    co_await work_example();
}

} // namespace

int main() {
    uvasync::run(all_examples());
}
