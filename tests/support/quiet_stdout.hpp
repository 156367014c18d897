// SPDX-License-Identifier: MIT
// Sends stdout to /dev/null while it lives: for tests that run example programs (which print
// as they go) many times over.
#pragma once

#include <cstdio>

#include <fcntl.h>
#include <unistd.h>

namespace uvasync::test {

class quiet_stdout {
public:
    quiet_stdout()
        : saved_(flush_and_dup()) {
        const int null = ::open("/dev/null", O_WRONLY);
        if (saved_ >= 0 && null >= 0) {
            ::dup2(null, STDOUT_FILENO);
        }
        if (null >= 0) {
            ::close(null);
        }
    }

    quiet_stdout(const quiet_stdout&) = delete;
    quiet_stdout& operator=(const quiet_stdout&) = delete;
    quiet_stdout(quiet_stdout&&) = delete;
    quiet_stdout& operator=(quiet_stdout&&) = delete;

    ~quiet_stdout() {
        std::fflush(stdout);
        if (saved_ >= 0) {
            ::dup2(saved_, STDOUT_FILENO);
            ::close(saved_);
        }
    }

private:
    static int flush_and_dup() {
        std::fflush(stdout);
        return ::dup(STDOUT_FILENO);
    }

    int saved_;
};

} // namespace uvasync::test
