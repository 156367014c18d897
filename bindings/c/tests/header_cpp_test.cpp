// SPDX-License-Identifier: MIT
// uvasync.h compiles as C++ too (with -Wall -Wextra -pedantic -Werror), with C linkage.
#include <cstdio>
#include <cstring>

#include <uvasync.h>

int main() {
    uvasync_req_t req{};
    req.data = &req;
    const bool ok = std::strcmp(uvasync_err_name(UV_ECANCELED), "ECANCELED") == 0 &&
                    uvasync_sleep(&req, nullptr, 1, nullptr) == UV_EINVAL;
    std::printf("%s\n", ok ? "header usable from C++" : "FAILED");
    return ok ? 0 : 1;
}
