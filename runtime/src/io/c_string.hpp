// SPDX-License-Identifier: MIT
// Strings handed to libuv as C strings: paths, host names, a child's arguments.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace uvasync::detail {

/// libuv takes C strings: an embedded NUL would silently cut `s` and name another file, host or
/// socket. Throws `std::invalid_argument("<context><op>: <subject> contains a NUL character")`,
/// for example "uvasync::fs::open: path contains a NUL character", before anything is created.
inline void require_c_string(std::string_view s, std::string_view context, std::string_view op,
                             std::string_view subject) {
    if (s.find('\0') != std::string_view::npos) {
        throw std::invalid_argument(std::string(context).append(op).append(": ").append(subject) +
                                    " contains a NUL character");
    }
}

} // namespace uvasync::detail
