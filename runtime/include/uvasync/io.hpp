// SPDX-License-Identifier: MIT
// The I/O layer of uvasync: libuv handles and requests as cancellation-safe awaitables.
// docs/io/ describes each facility and what cancelling it does (SEMANTICS 14).
#pragma once
// **Thread:** this header only includes others; each states which of its functions are
// thread-safe (only `runtime::post`, `cancel_source::request_cancel` and the copying of
// tokens and sources are; everything else is loop-thread only, SEMANTICS 3.8).

// clang-format off: this include stays first
#include <uvasync/detail/requires_cxx20.hpp> // a clear error without C++20
// clang-format on

#include <uvasync/io/address.hpp>
#include <uvasync/io/dns.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/fs.hpp>
#include <uvasync/io/listener.hpp>
#include <uvasync/io/pipe.hpp>
#include <uvasync/io/process.hpp>
#include <uvasync/io/signal.hpp>
#include <uvasync/io/stream.hpp>
#include <uvasync/io/tcp.hpp>
#include <uvasync/io/tty.hpp>
#include <uvasync/io/udp.hpp>
#include <uvasync/io/work.hpp>
