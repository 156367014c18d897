// SPDX-License-Identifier: MIT
// The export macro of the shared library. libuvasync is built with hidden symbol visibility;
// every compiled function or class that the installed headers' inline and template code calls
// is marked `UVASYNC_API` so that it stays visible to programs linking the shared library.
// Everything else (the scheduler's internals, the I/O states) stays private to the library.
// The standard attribute syntax, so that it combines with `[[nodiscard]]` on a class.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define UVASYNC_API [[gnu::visibility("default")]]
#else
#define UVASYNC_API
#endif
