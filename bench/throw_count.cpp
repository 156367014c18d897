// SPDX-License-Identifier: MIT
// Interposes the two entry points of libgcc's unwinder that start a new unwind, so the
// benchmarks can report throws per task without a debugger. `_Unwind_Resume` (the continuation
// of an unwind after a landing pad ran destructors) is not a new throw and is not counted.
#include "throw_count.hpp"

#include <dlfcn.h>
#include <unwind.h>

namespace {

std::uint64_t count = 0;

template <class F>
F next(const char* name) {
    return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

} // namespace

namespace bench {

std::uint64_t throws() noexcept {
    return count;
}

} // namespace bench

extern "C" _Unwind_Reason_Code _Unwind_RaiseException(_Unwind_Exception* e) {
    using fn = _Unwind_Reason_Code (*)(_Unwind_Exception*);
    static const fn real = next<fn>("_Unwind_RaiseException");
    ++count;
    return real(e);
}

extern "C" _Unwind_Reason_Code _Unwind_Resume_or_Rethrow(_Unwind_Exception* e) {
    using fn = _Unwind_Reason_Code (*)(_Unwind_Exception*);
    static const fn real = next<fn>("_Unwind_Resume_or_Rethrow");
    ++count;
    return real(e);
}
