// SPDX-License-Identifier: MIT
#pragma once

// The periodic timer runs on the deadline queue, not on a libuv handle (decision 0008), so it
// belongs to the core: <uvasync/timer.hpp>. This header stays for existing includes.
#include <uvasync/timer.hpp>
