// SPDX-License-Identifier: MIT
#include <chrono>
#include <string>

#include <uvasync/sleep.hpp>

namespace uvasync::detail {

void sleep_awaiter::describe(const parked_wait& w, deadline origin, std::string& out) {
    const auto& self = static_cast<const sleep_awaiter&>(w);
    if (self.queued()) {
        out +=
            "until " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(self.when - origin).count()) +
            " ms";
    } else {
        out += "forever";
    }
}

} // namespace uvasync::detail
