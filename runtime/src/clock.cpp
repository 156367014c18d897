// SPDX-License-Identifier: MIT
#include <uvasync/clock.hpp>
#include <uvasync/detail/runtime_state.hpp>

namespace uvasync {

loop_clock::time_point loop_clock::now() {
    return detail::current_runtime("loop_clock::now()").fresh_now(); // SEMANTICS 13.2
}

} // namespace uvasync
