// Output formats of migratefs-sim: one JSON object, a human summary, a CSV series.
#pragma once

#include <ostream>
#include <string>

#include "broker/sim/simulator.h"

namespace migratefs::sim {

// One JSON object on one line (keys in a fixed order, so equal results give
// byte-equal text).
std::string ToJson(const Results& r);

// A few aligned lines for a terminal.
std::string ToText(const Results& r);

// Header line and one line per period (PeriodRow fields).
void WriteCsv(const Results& r, std::ostream& out);

}  // namespace migratefs::sim
