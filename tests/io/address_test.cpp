// SPDX-License-Identifier: MIT
// socket_address: parsing, formatting, comparison, errors.

#include <stdexcept>
#include <string>
#include <system_error>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/address.hpp>
#include <uvasync/io/error.hpp>

#include "loop_fixture.hpp"

#include <netinet/in.h>
#include <sys/un.h>

namespace uvasync::test {
namespace {

TEST_CASE_FIXTURE(loop_fixture, "address_default_is_unspecified") {
    const socket_address a;
    CHECK(a.family() == AF_UNSPEC);
    CHECK(a.ip().empty());
    CHECK(a.port() == 0);
    CHECK(a.to_string() == "unspecified");
    CHECK(a == socket_address());
}

TEST_CASE_FIXTURE(loop_fixture, "address_parses_ipv4_and_ipv6_literals") {
    const socket_address v4 = socket_address::parse("127.0.0.1", 8080);
    CHECK(v4.family() == AF_INET);
    CHECK(v4.ip() == "127.0.0.1");
    CHECK(v4.port() == 8080);
    CHECK(v4.to_string() == "127.0.0.1:8080");

    const socket_address v6 = socket_address::parse("::1", 443);
    CHECK(v6.family() == AF_INET6);
    CHECK(v6.ip() == "::1");
    CHECK(v6.port() == 443);
    CHECK(v6.to_string() == "[::1]:443");

    CHECK(socket_address::parse("0.0.0.0", 0).to_string() == "0.0.0.0:0");
    CHECK(socket_address::parse("2001:db8::5", 1).to_string() == "[2001:db8::5]:1");
}

TEST_CASE_FIXTURE(loop_fixture, "address_bad_literals_are_einval") {
    for (const char* bad : {"", "localhost", "1.2.3", "256.1.1.1", "::g", "[::1]", "1.2.3.4 "}) {
        CAPTURE(bad);
        try {
            (void)socket_address::parse(bad, 80);
            FAIL("parsed");
        } catch (const std::system_error& e) {
            CHECK(e.code() == uv_error_code(UV_EINVAL));
            CHECK(std::string(e.what()).find("socket_address::parse") != std::string::npos);
        }
    }
}

TEST_CASE_FIXTURE(loop_fixture, "address_from_copies_inet_families_only") {
    const socket_address v4 = socket_address::parse("10.1.2.3", 99);
    CHECK(socket_address::from(v4.data()) == v4);
    const socket_address v6 = socket_address::parse("fe80::1", 7);
    CHECK(socket_address::from(v6.data()) == v6);
    CHECK_THROWS_AS((void)socket_address::from(nullptr), std::invalid_argument);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    CHECK_THROWS_AS((void)socket_address::from(reinterpret_cast<const sockaddr*>(&un)),
                    std::invalid_argument);
}

TEST_CASE_FIXTURE(loop_fixture, "address_equality_compares_family_address_and_port") {
    const socket_address a = socket_address::parse("127.0.0.1", 1);
    socket_address b = a; // copyable value
    CHECK(a == b);
    CHECK_FALSE(a == socket_address::parse("127.0.0.1", 2));
    CHECK_FALSE(a == socket_address::parse("127.0.0.2", 1));
    CHECK_FALSE(a == socket_address::parse("::1", 1));
    CHECK_FALSE(a == socket_address());
    b = socket_address::parse("::1", 1);
    CHECK(b == socket_address::parse("::1", 1));
}

} // namespace
} // namespace uvasync::test
