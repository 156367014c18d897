// SPDX-License-Identifier: MIT
#pragma once
// **Thread:** this header only includes others; each states which of its functions are
// thread-safe (only `runtime::post`, `cancel_source::request_cancel` and the copying of
// tokens and sources are; everything else is loop-thread only, SEMANTICS 3.8).

// The periodic timer runs on the deadline queue, not on a libuv handle (decision 0008), so it
// belongs to the core: <uvasync/timer.hpp>. This header stays for existing includes.
#include <uvasync/timer.hpp>
