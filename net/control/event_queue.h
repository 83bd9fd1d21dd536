// The bounded hand-off between the migration service's event thread (producer) and one
// `events` connection on the server's I/O thread (consumer). The producer never blocks:
// when the consumer falls `capacity` lines behind, the queue drops what it holds and
// remembers that it overflowed, and the connection is then closed.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>

namespace migratefs::control {

class EventQueue {
 public:
  explicit EventQueue(size_t capacity) : capacity_(capacity) {}

  // Producer side. Returns true when the consumer must be woken: the first push since the
  // consumer's last Take(), or the push that overflowed. Pushes after an overflow are
  // ignored.
  bool Push(std::string line);

  struct Batch {
    std::string lines;     // every queued line, concatenated, in push order
    bool overflowed = false;
  };
  // Consumer side: takes everything queued and re-arms the wake-up.
  Batch Take();

  // Whether a push overflowed; the consumer may look without taking.
  bool overflowed();

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::string lines_;
  size_t count_ = 0;
  bool overflowed_ = false;
  bool wake_pending_ = false;
};

}  // namespace migratefs::control
