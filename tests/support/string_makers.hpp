// SPDX-License-Identifier: MIT
// How doctest prints what tests compare: event traces, result lists, deadlines.
#pragma once

#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

namespace doctest {

template <>
struct StringMaker<std::vector<std::string>> {
    static String convert(const std::vector<std::string>& v) {
        std::string s = "{";
        for (const auto& e : v) {
            s += "\"" + e + "\", ";
        }
        s += "}";
        return s.c_str();
    }
};

template <>
struct StringMaker<std::vector<int>> {
    static String convert(const std::vector<int>& v) {
        std::string s = "{";
        for (int e : v) {
            s += std::to_string(e) + ", ";
        }
        s += "}";
        return s.c_str();
    }
};

/// A deadline as its millisecond count (or "never").
template <>
struct StringMaker<uvasync::deadline> {
    static String convert(const uvasync::deadline& d) {
        if (d == uvasync::never) {
            return "never";
        }
        return (std::to_string(d.time_since_epoch().count()) + " ms").c_str();
    }
};

} // namespace doctest
