// What the engine leaves for the worker that replaces this one after a crash or an
// upgrade (fs/supervisor.h): this daemon's instance id, the next migration number,
// and every migration still running with the request that started it (limits and
// mirror mode as they are now). A restarted worker starts each again under the same
// id; the target still holds its partial copy of the same identity, so the new start
// compares blocks by hash and sends only what differs (migration.h): nothing written
// before the crash is lost, acknowledged or not, and nothing is copied twice.
//
// Finished migrations are not here: their fences outlive the daemon on their own
// (restored_fence.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "migratefs/migration_service.h"
#include "migratefs/status.h"

namespace migratefs::migration {

struct JournalEntry {
  std::string id;
  StartRequest request;
  uint32_t resumed = 0;  // times it was started again by a new worker so far
  bool postcopy = false;  // handed over (hybrid finish): resumes the push, fenced
};

struct JournalDoc {
  std::string instance_id;  // raw bytes
  uint64_t next_id = 1;
  std::vector<JournalEntry> running;
};

std::string EncodeJournal(const JournalDoc& doc);
// invalid_argument naming what is wrong; "" decodes to an empty doc.
Result<JournalDoc> DecodeJournal(const std::string& text);

}  // namespace migratefs::migration
