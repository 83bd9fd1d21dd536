// `migratectl watch [ID...]`: follows migrations until each has finished, failed or been
// cancelled. On a terminal: one progress bar per migration (phase, percent, rate, ETA),
// redrawn in place about 4 times a second. Otherwise (a pipe, a log): one plain line per
// migration per second. With --json: the daemon's `list` answer line, once per second.
#pragma once

#include <string>
#include <vector>

#include "broker/ctl/runner.h"

namespace migratefs::ctl {

// `ids` empty = every migration the daemon lists (including ones started meanwhile).
// Exit: kExitOk when every watched migration finished; kExitBadOutcome when one failed or
// was cancelled; kExitDaemonError for an unknown id; transport errors as usual.
int RunWatch(const GlobalOptions& options, const std::vector<std::string>& ids);

}  // namespace migratefs::ctl
