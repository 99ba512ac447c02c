// Which process image this is: a counter that grows by one in every child made by fork(). State
// tied to threads of the parent (a stream's hold, the worker pool) compares the generation it was
// made in with the current one: in a child those threads do not exist, so such state is stale.
#pragma once

#include <cstdint>

namespace pyrnn {

// Starts at 1 and grows by one in every child process made by fork(), once
// register_fork_handler() has run; never 0.
std::uint32_t fork_generation() noexcept;

// Registers the pthread_atfork handler that advances the generation (idempotent, thread-safe).
// Returns false if the system refused it (then forks go unnoticed).
bool register_fork_handler() noexcept;

}  // namespace pyrnn
