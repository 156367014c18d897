// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace uvasync::detail {

template <class Signature>
class callback;

/// A copyable type-erased callable, used where the API stores a user's function
/// (`runtime_options::exception_handler`, `runtime::post`, `runtime::close_from_callback`)
/// in place of `std::function`, whose header (`<functional>`, with `<unordered_map>` and the
/// searchers in C++20) every user would otherwise compile (decision 0061).
///
/// It behaves like `std::function` for what those uses need: built from any copyable callable
/// but a pointer to member (an empty one from `nullptr`, a null function pointer or anything
/// with a false explicit `operator bool`, such as an empty `std::function`), copied by
/// copying the callable, moved without allocating, tested with `explicit operator bool`, and
/// invoked through a const `operator()` that calls the stored callable as a non-const lvalue.
/// Calling an empty one is a precondition violation (the library never does). Storing a callable
/// allocates once.
template <class R, class... Args>
class callback<R(Args...)> {
    // std::conjunction stops at the first false member, so the copy check is not instantiated
    // for a callback itself (which would ask whether callback is copyable while declaring it).
    template <class F>
    static constexpr bool accepts =
        std::conjunction_v<std::negation<std::is_same<std::remove_cvref_t<F>, callback>>,
                           std::negation<std::is_member_pointer<std::decay_t<F>>>,
                           std::is_copy_constructible<std::decay_t<F>>,
                           std::is_invocable_r<R, std::decay_t<F>&, Args...>>;

public:
    callback() noexcept = default;

    callback(std::nullptr_t) noexcept {} // implicit, like std::function

    template <class F, std::enable_if_t<accepts<F>, int> = 0>
    callback(F&& f) { // implicit, like std::function
        using D = std::decay_t<F>;
        if constexpr (std::is_pointer_v<D>) {
            if (f == nullptr) {
                return;
            }
        } else if constexpr (std::is_constructible_v<bool, const D&> &&
                             !std::is_convertible_v<const D&, bool>) {
            if (!static_cast<bool>(f)) {
                return; // an empty wrapper, e.g. std::function
            }
        }
        target_ = new holder<D>(std::forward<F>(f));
    }

    callback(const callback& other)
        : target_(other.target_ != nullptr ? other.target_->clone() : nullptr) {}

    callback(callback&& other) noexcept
        : target_(std::exchange(other.target_, nullptr)) {}

    callback& operator=(const callback& other) {
        if (this != &other) {
            callback copy(other);
            swap(copy);
        }
        return *this;
    }

    callback& operator=(callback&& other) noexcept {
        callback moved(std::move(other));
        swap(moved);
        return *this;
    }

    callback& operator=(std::nullptr_t) noexcept {
        callback empty;
        swap(empty);
        return *this;
    }

    template <class F, std::enable_if_t<accepts<F>, int> = 0>
    callback& operator=(F&& f) {
        callback made(std::forward<F>(f));
        swap(made);
        return *this;
    }

    ~callback() { delete target_; }

    void swap(callback& other) noexcept { std::swap(target_, other.target_); }

    [[nodiscard]] explicit operator bool() const noexcept { return target_ != nullptr; }

    R operator()(Args... args) const { return target_->call(std::forward<Args>(args)...); }

private:
    struct base {
        base() = default;
        base(const base&) = delete;
        base& operator=(const base&) = delete;
        base(base&&) = delete;
        base& operator=(base&&) = delete;
        virtual ~base() = default;
        [[nodiscard]] virtual base* clone() const = 0;
        virtual R call(Args&&... args) = 0;
    };

    template <class F>
    struct holder final : base {
        template <class G>
        explicit holder(G&& g)
            : f(std::forward<G>(g)) {}

        [[nodiscard]] base* clone() const override { return new holder(f); }

        R call(Args&&... args) override {
            if constexpr (std::is_void_v<R>) {
                f(std::forward<Args>(args)...);
            } else {
                return f(std::forward<Args>(args)...);
            }
        }

        F f;
    };

    base* target_ = nullptr;
};

} // namespace uvasync::detail
