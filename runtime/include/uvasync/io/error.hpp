// SPDX-License-Identifier: MIT
#pragma once
// **Thread:** this header only includes others; each states which of its functions are
// thread-safe (only `runtime::post`, `cancel_source::request_cancel` and the copying of
// tokens and sources are; everything else is loop-thread only, SEMANTICS 3.8).

// The libuv error category is used by the core as well as by the I/O layer, so it lives at the
// bottom of the library, in <uvasync/uv_error.hpp>; this header stays for existing includes.
#include <uvasync/uv_error.hpp>
