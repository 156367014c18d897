// SPDX-License-Identifier: MIT
// uvasync_runtime_*: a uvasync::runtime borrowing the program's loop, the root of every scope,
// and the close sequence (cancel everything, wait for the last callback, close the handles
// without running the loop, then call the program back).
#include "internal.hpp"

namespace uvasync::capi {

namespace {

runtime_options options_for(bool virtual_clock) {
    runtime_options o;
    o.virtual_clock = virtual_clock;
    return o;
}

} // namespace

c_runtime::c_runtime(uv_loop_t* l, bool virtual_clock)
    : loop(l)
    , rt(l, options_for(virtual_clock)) {
    if (const int rc = uv_idle_init(loop, &idle); rc < 0) {
        throw_uv_error(rc, "uv_idle_init");
    }
    idle.data = this;
}

c_runtime::~c_runtime() {
    forget_streams(this);
}

void c_runtime::defer(deferred* d) noexcept {
    d->next_deferred = nullptr;
    if (last != nullptr) {
        last->next_deferred = d;
    } else {
        first = d;
    }
    last = d;
    if (!handles_closing) {
        uv_idle_start(&idle, [](uv_idle_t* h) { static_cast<c_runtime*>(h->data)->on_idle(); });
    }
}

void c_runtime::finished() noexcept {
    --pending;
    maybe_close();
}

void c_runtime::maybe_close() noexcept {
    if (closing && pending == 0 && !handles_closing) {
        uv_idle_start(&idle, [](uv_idle_t* h) { static_cast<c_runtime*>(h->data)->on_idle(); });
    }
}

void c_runtime::on_idle() noexcept {
    // Callbacks deferred by this batch run in the next one.
    deferred* d = std::exchange(first, nullptr);
    last = nullptr;
    while (d != nullptr) {
        deferred* next = d->next_deferred;
        d->run(); // may free d
        d = next;
    }
    if (closing && pending == 0 && !handles_closing) {
        // The tasks that delivered the last callbacks finish in the runtime's next drain.
        if (rt.task_count() != 0) {
            return;
        }
        handles_closing = true;
        uv_idle_stop(&idle);
        try {
            rt.close_from_callback([this] {
                uv_close(reinterpret_cast<uv_handle_t*>(&idle), [](uv_handle_t* h) {
                    auto* self = static_cast<c_runtime*>(h->data);
                    if (self->close_cb != nullptr) {
                        self->close_cb(self);
                    }
                    self->release();
                });
            });
        } catch (...) {
            // Work posted from another thread started a task meanwhile: try again next time.
            handles_closing = false;
            uv_idle_start(&idle, [](uv_idle_t* h) { static_cast<c_runtime*>(h->data)->on_idle(); });
        }
        return;
    }
    if (first == nullptr) {
        uv_idle_stop(&idle);
    }
}

void c_runtime::release() noexcept {
    if (--refs == 0) {
        delete this;
    }
}

int status_of_current_exception(c_scope* scope) noexcept {
    try {
        throw;
    } catch (const cancelled_error&) {
        const int st = scope != nullptr ? scope->status() : 0;
        return st != 0 ? st : UV_ECANCELED;
    } catch (const std::bad_alloc&) {
        return UV_ENOMEM;
    } catch (const std::system_error& e) {
        if (e.code().category() == uv_category()) {
            return e.code().value();
        }
        if (e.code().category() == std::generic_category() ||
            e.code().category() == std::system_category()) {
            return -e.code().value();
        }
        return UV_EIO;
    } catch (const std::invalid_argument&) {
        return UV_EINVAL;
    } catch (...) {
        return UV_EIO;
    }
}

} // namespace uvasync::capi

using namespace uvasync::capi;

extern "C" {

const char* uvasync_strerror(int err) {
    if (err == UVASYNC_ECLOSED) {
        return "uvasync runtime is closing";
    }
    return uv_strerror(err);
}

const char* uvasync_err_name(int err) {
    if (err == UVASYNC_ECLOSED) {
        return "UVASYNC_ECLOSED";
    }
    return uv_err_name(err);
}

namespace {

int init(uv_loop_t* loop, uvasync_runtime_t** out, bool virtual_clock) {
    if (loop == nullptr || out == nullptr) {
        return UV_EINVAL;
    }
    return guarded([&] {
        auto* rt = new c_runtime(loop, virtual_clock);
        rt->data = nullptr;
        *out = rt;
        return 0;
    });
}

} // namespace

int uvasync_runtime_init(uv_loop_t* loop, uvasync_runtime_t** out) {
    return init(loop, out, false);
}

int uvasync_runtime_init_virtual(uv_loop_t* loop, uvasync_runtime_t** out) {
    return init(loop, out, true);
}

int uvasync_runtime_close(uvasync_runtime_t* r, uvasync_close_cb cb) {
    if (r == nullptr) {
        return UV_EINVAL;
    }
    auto* rt = static_cast<c_runtime*>(r);
    if (rt->closing) {
        return UV_EALREADY;
    }
    rt->closing = true;
    rt->close_cb = cb;
    rt->root.request_cancel("runtime closed");
    rt->maybe_close();
    return 0;
}

uv_loop_t* uvasync_runtime_loop(const uvasync_runtime_t* r) {
    return r == nullptr ? nullptr : static_cast<const c_runtime*>(r)->loop;
}

void uvasync_runtime_keep_alive(uvasync_runtime_t* r, int on) {
    if (r != nullptr && !static_cast<c_runtime*>(r)->handles_closing) {
        static_cast<c_runtime*>(r)->rt.keep_loop_alive(on != 0);
    }
}

uint64_t uvasync_now(const uvasync_runtime_t* r) {
    if (r == nullptr) {
        return 0;
    }
    return static_cast<uint64_t>(
        static_cast<const c_runtime*>(r)->rt.now().time_since_epoch().count());
}

} // extern "C"
