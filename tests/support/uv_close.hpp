// SPDX-License-Identifier: MIT
#pragma once

#include <uv.h>

namespace uvasync::detail {

/// Closes `handle` and deletes `owner` (the object the handle is embedded in) in the close
/// callback, the first moment libuv no longer touches the handle (SEMANTICS 14.4). Calling
/// it again for a handle that is already closing does nothing, so `uv_close` runs once.
///
/// The handle's `data` is set to `owner`; callbacks that may still run before the close
/// callback (a write or connect completing with `UV_ECANCELED`) must not assume anything
/// else about it.
template <class Owner, class Handle>
void close_then_delete(Owner* owner, Handle* handle) noexcept {
    auto* h = reinterpret_cast<uv_handle_t*>(handle);
    if (uv_is_closing(h) != 0) {
        return;
    }
    h->data = owner;
    uv_close(h, [](uv_handle_t* closed) { delete static_cast<Owner*>(closed->data); });
}

} // namespace uvasync::detail
