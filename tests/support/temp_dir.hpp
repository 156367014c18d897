// SPDX-License-Identifier: MIT
// A fresh temporary directory for one test, removed with its contents at the end.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include <doctest/doctest.h>

namespace uvasync::test {

/// A fresh directory under the system's temporary directory (`mkdtemp`), removed with its
/// contents (files, FIFOs, Unix domain sockets) by the destructor. Its paths are short enough
/// for a Unix domain socket's `sun_path` under /tmp.
class temp_dir {
public:
    temp_dir() {
        std::string templ = (std::filesystem::temp_directory_path() / "uvasync-io-XXXXXX").string();
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        path_ = templ;
    }

    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    temp_dir(temp_dir&&) = delete;
    temp_dir& operator=(temp_dir&&) = delete;

    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }

    /// The path of `name` inside the directory.
    [[nodiscard]] std::string operator/(const std::string& name) const {
        return (path_ / name).string();
    }

    [[nodiscard]] std::string str() const { return path_.string(); }

private:
    std::filesystem::path path_;
};

} // namespace uvasync::test
