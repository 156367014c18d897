// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>

#include <uv.h>

namespace uvasync::detail {

#ifndef _WIN32
static_assert(sizeof(uv_buf_t::len) >= sizeof(std::size_t),
              "uv_buf_t::len holds any size_t on Unix");
#endif

/// A `uv_buf_t` over `n` bytes at `p`, without `uv_buf_init`, whose `unsigned int` length would
/// truncate buffers of 4 GiB and more.
inline uv_buf_t make_uv_buf(const char* p, std::size_t n) noexcept {
    uv_buf_t b{};
    b.base = const_cast<char*>(p);
    b.len = n;
    return b;
}

/// The largest part of a write handed to `uv_try_write` at once: it returns the count as an
/// `int`, so larger buffers are offered in part and the rest goes to `uv_write`.
inline constexpr std::size_t max_try_write = std::size_t{1} << 30;

/// How many of `n` bytes to offer to `uv_try_write`.
constexpr std::size_t try_write_length(std::size_t n) noexcept {
    return n < max_try_write ? n : max_try_write;
}

} // namespace uvasync::detail
