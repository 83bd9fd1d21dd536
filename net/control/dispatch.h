// Carries out one parsed request against the migration service and builds its answer.
// Knows nothing of sockets; the control server decides on which thread this runs.
#pragma once

#include <nlohmann/json.hpp>

#include "migratefs/migration_service.h"
#include "net/control/request.h"
#include "net/control/response.h"

namespace migratefs::control {

// True for the commands whose service call may open files, wait for the peer or read
// whole images (start, cancel, release, finish, verify): the server runs them on its
// worker pool, never on the I/O thread, so `list`, `status` and progress queries of
// every other client keep being answered meanwhile.
bool IsSlow(const Command& command);

// True for the commands that block for as long as the client asked (profile: its
// "seconds"): the server runs them on a pool of their own, so they never hold up the
// finish and verify of other clients.
bool IsLong(const Command& command);

// Calls the service for `command` and returns the answer object (ok or error, tag
// echoed). An exception escaping the service becomes an `internal` error answer.
// EventsCommand is not handled here (the server owns subscriptions): it answers
// `internal`.
nlohmann::json Execute(const Command& command, MigrationService& service, const Tag& tag);

}  // namespace migratefs::control
