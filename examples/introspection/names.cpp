// SPDX-License-Identifier: MIT
// Task names (docs/introspection.md): a named spawn, and a task renaming itself.
#include <cstdint>
#include <cstdio>
#include <string>

#include <uvasync/uvasync.hpp>

using namespace uvasync;

task<> fetch(std::string url) {
    set_current_task_name("fetch " + url); // from inside the task: renames it
    const std::string n = current_task_name();
    const std::uint64_t id = current_task_id();
    std::printf("task #%llu is \"%s\"\n", static_cast<unsigned long long>(id), n.c_str());
    co_return;
}

task<> main_task() {
    task_handle<> h = spawn(fetch("example.org"), "fetch"); // or rt.spawn(t, name), g.spawn(...)
    std::printf("spawned task #%llu\n", static_cast<unsigned long long>(h.id()));
    co_await h;
}

int main() {
    uvasync::run(main_task());
}
