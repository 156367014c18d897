// SPDX-License-Identifier: MIT
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <uvasync/exception_group.hpp>

namespace uvasync {

namespace {

std::string describe(const std::vector<std::exception_ptr>& errors) {
    std::string s = std::to_string(errors.size()) + (errors.size() == 1 ? " error" : " errors") +
                    " in a task group";
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

} // namespace

exception_group::exception_group(std::vector<std::exception_ptr> errors)
    : errors_(std::move(errors))
    , what_(describe(errors_)) {
}

} // namespace uvasync
