// SPDX-License-Identifier: MIT
#include <uv.h>
#include <uvasync/uv_error.hpp>

namespace uvasync {

namespace {

class uv_error_category final : public std::error_category {
public:
    [[nodiscard]] const char* name() const noexcept override { return "uv"; }

    [[nodiscard]] std::string message(int status) const override { return uv_strerror(status); }

    // On Unix libuv's codes are negated errno values (uv/errno.h), so they map onto the
    // generic category for `code == std::errc::...` comparisons. libuv's own codes (UV_EOF
    // at -4095, UV_EAI_* from -3000) have no errno and map to themselves.
    [[nodiscard]] std::error_condition default_error_condition(int status) const noexcept override {
        if (status < 0 && status > -1000) {
            return {-status, std::generic_category()};
        }
        return {status, *this};
    }
};

} // namespace

const std::error_category& uv_category() noexcept {
    static const uv_error_category category;
    return category;
}

std::error_code uv_error_code(int status) noexcept {
    return {status, uv_category()};
}

std::string uv_error_name(int status) {
    return uv_err_name(status);
}

void throw_uv_error(int status, const char* what) {
    throw std::system_error(uv_error_code(status), what);
}

} // namespace uvasync
