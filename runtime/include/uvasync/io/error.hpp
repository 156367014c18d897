// SPDX-License-Identifier: MIT
#pragma once

// The libuv error category is used by the core as well as by the I/O layer, so it lives at the
// bottom of the library, in <uvasync/uv_error.hpp>; this header stays for existing includes.
#include <uvasync/uv_error.hpp>
