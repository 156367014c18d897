// SPDX-License-Identifier: MIT
// Stops a translation unit that includes uvasync without C++20 coroutines, with one clear
// message instead of a hundred errors from the coroutine types. uvasync.hpp and io.hpp include
// it before anything else. Adding -fcoroutines to a C++17 build is not enough: the headers use
// concepts and C++20 library features too (docs/toolchain.md, section 1).
#pragma once

#if __cplusplus < 202002L || !defined(__cpp_impl_coroutine)
#error "uvasync needs C++20 with coroutines: compile with -std=c++20 (g++ >= 12, clang >= 14)"
// #error lets the compiler go on and report every later error; a missing include stops it.
#include "uvasync needs -std=c++20"
#endif
