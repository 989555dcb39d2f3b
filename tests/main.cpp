// The tests' main for cpu, sim and data tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
