// SPDX-License-Identifier: MIT
// detail::callback, the type-erased callable of runtime_options::exception_handler,
// runtime::post and runtime::close_from_callback (decision 0061): what it keeps of
// std::function's behaviour, since code written against std::function assigns it.
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <doctest/doctest.h>
#include <uvasync/detail/callback.hpp>

using uvasync::detail::callback;

namespace {

int calls = 0;

void count_call(std::exception_ptr /*e*/) {
    ++calls;
}

} // namespace

TEST_CASE(
    "an empty callback comes from nothing, nullptr, a null pointer or an empty std::function") {
    const callback<void(std::exception_ptr)> none;
    CHECK_FALSE(none);
    const callback<void(std::exception_ptr)> from_nullptr = nullptr;
    CHECK_FALSE(from_nullptr);
    void (*null_pointer)(std::exception_ptr) = nullptr;
    const callback<void(std::exception_ptr)> from_null_pointer = null_pointer;
    CHECK_FALSE(from_null_pointer);
    const std::function<void(std::exception_ptr)> empty_function;
    const callback<void(std::exception_ptr)> from_empty_function = empty_function;
    CHECK_FALSE(from_empty_function);

    callback<void(std::exception_ptr)> assigned = &count_call;
    CHECK(assigned);
    assigned = nullptr;
    CHECK_FALSE(assigned);
}

TEST_CASE("a callback calls a function pointer, a lambda or a std::function with its argument") {
    calls = 0;
    const callback<void(std::exception_ptr)> pointer = &count_call;
    pointer(nullptr);
    CHECK(calls == 1);

    std::string seen;
    const callback<void(std::exception_ptr)> lambda = [&seen](const std::exception_ptr& e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::runtime_error& err) {
            seen = err.what();
        }
    };
    lambda(std::make_exception_ptr(std::runtime_error("boom")));
    CHECK(seen == "boom");

    const std::function<int(int)> twice = [](int x) { return 2 * x; };
    const callback<int(int)> from_function = twice;
    CHECK(from_function(21) == 42);
}

TEST_CASE("a const callback calls its callable as a non-const lvalue, like std::function") {
    const callback<int()> counter = [n = 0]() mutable { return ++n; };
    CHECK(counter() == 1);
    CHECK(counter() == 2);
}

TEST_CASE("copying a callback copies the callable; moving it moves the one callable") {
    auto owned = std::make_shared<int>(0);
    callback<int()> original = [owned, n = 0]() mutable { return ++n; };
    CHECK(owned.use_count() == 2);
    CHECK(original() == 1);

    callback<int()> copy = original;
    CHECK(owned.use_count() == 3);
    CHECK(copy() == 2); // the copy has its own state, copied after the first call
    CHECK(original() == 2);

    callback<int()> moved = std::move(original);
    CHECK(owned.use_count() == 3);
    CHECK_FALSE(original); // NOLINT(bugprone-use-after-move): a moved-from callback is empty
    CHECK(moved() == 3);

    copy = moved;
    CHECK(owned.use_count() == 3);
    CHECK(copy() == 4);
    moved = nullptr;
    copy = nullptr;
    CHECK(owned.use_count() == 1);
}

TEST_CASE("a std::function can be made from a callback") {
    int ran = 0;
    const callback<void()> cb = [&ran] { ++ran; };
    const std::function<void()> f = cb;
    f();
    cb();
    CHECK(ran == 2);
}
