// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// **Thread:** the exception types here are plain values: thread-safe like any standard
// exception (copy them freely, rethrow them on any thread).
namespace uvasync {

/// Several errors that ended a `task_group` (Python's `ExceptionGroup`), in completion order,
/// the body's own error last. Each error keeps its type (held in a `std::exception_ptr`).
///
/// The C++ answer to `except*`: ask with `contains<E>()`, take the matches with `matching<E>()`,
/// split with `split<E>()`, or handle each match with `for_each<E>(f)`. Nested groups (a group
/// raised inside a group) are searched too.
class exception_group : public std::exception {
public:
    explicit exception_group(std::vector<std::exception_ptr> errors)
        : errors_(std::move(errors))
        , what_(describe(errors_)) {}

    [[nodiscard]] const char* what() const noexcept override { return what_.c_str(); }

    [[nodiscard]] const std::vector<std::exception_ptr>& exceptions() const noexcept {
        return errors_;
    }

    [[nodiscard]] std::size_t size() const noexcept { return errors_.size(); }

    /// True if some error (at any nesting depth) is an `E`.
    template <class E>
    [[nodiscard]] bool contains() const {
        bool found = false;
        visit<E>([&](const E&) { found = true; });
        return found;
    }

    /// Every error that is an `E`, depth first, in order.
    template <class E>
    [[nodiscard]] std::vector<std::exception_ptr> matching() const {
        std::vector<std::exception_ptr> out;
        for (const auto& e : errors_) {
            collect<E>(e, out);
        }
        return out;
    }

    /// Calls `f(const E&)` for each error that is an `E`.
    template <class E, class F>
    void for_each(F&& f) const {
        visit<E>(std::forward<F>(f));
    }

    /// Splits into (the errors that are `E`, the rest), like `ExceptionGroup.split`; an empty
    /// side is `nullopt`. Nested groups are flattened.
    template <class E>
    [[nodiscard]] std::pair<std::optional<exception_group>, std::optional<exception_group>>
    split() const {
        std::vector<std::exception_ptr> match;
        std::vector<std::exception_ptr> rest;
        flatten(errors_,
                [&](const std::exception_ptr& e) { (is<E>(e) ? match : rest).push_back(e); });
        auto wrap = [](std::vector<std::exception_ptr>&& v) -> std::optional<exception_group> {
            if (v.empty()) {
                return std::nullopt;
            }
            return exception_group(std::move(v));
        };
        return {wrap(std::move(match)), wrap(std::move(rest))};
    }

private:
    template <class E>
    static bool is(const std::exception_ptr& e) {
        try {
            std::rethrow_exception(e);
        } catch (const E&) {
            return true;
        } catch (...) {
            return false;
        }
    }

    template <class F>
    static void flatten(const std::vector<std::exception_ptr>& errors, F&& f) {
        for (const auto& e : errors) {
            try {
                std::rethrow_exception(e);
            } catch (const exception_group& g) {
                flatten(g.errors_, f);
            } catch (...) {
                f(e);
            }
        }
    }

    template <class E>
    static void collect(const std::exception_ptr& e, std::vector<std::exception_ptr>& out) {
        if (is<E>(e)) {
            out.push_back(e);
            return;
        }
        try {
            std::rethrow_exception(e);
        } catch (const exception_group& g) {
            for (const auto& inner : g.errors_) {
                collect<E>(inner, out);
            }
        } catch (...) {
        }
    }

    template <class E, class F>
    void visit(F&& f) const {
        for (const auto& e : matching<E>()) {
            try {
                std::rethrow_exception(e);
            } catch (const E& ex) {
                f(ex);
            }
        }
    }

    static std::string describe(const std::vector<std::exception_ptr>& errors) {
        std::string s = std::to_string(errors.size()) +
                        (errors.size() == 1 ? " error" : " errors") + " in a task group";
        if (!errors.empty()) {
            try {
                std::rethrow_exception(errors.front());
            } catch (const std::exception& e) {
                s += "; first: ";
                s += e.what();
            } catch (...) {
            }
        }
        return s;
    }

    std::vector<std::exception_ptr> errors_;
    std::string what_;
};

} // namespace uvasync
