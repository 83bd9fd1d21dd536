// Validation of image names received from peers (invariant I5).
//
// A valid name is relative to the served directory and can only name something
// beneath it: not empty, no leading '/', no "." or ".." component, no empty component
// ("a//b", trailing '/'), no NUL byte, at most wire::kMaxNameLength bytes in total,
// wire::kMaxNameComponent per component and wire::kMaxNameComponents components.
// Lexical validation alone is not enough against symlinks; the server additionally
// resolves with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
#pragma once

#include <string>
#include <string_view>

#include "migratefs/status.h"

namespace migratefs::net {

// Ok, or kBadName with a message that says which rule the name breaks.
Status ValidateImageName(std::string_view name);

// Splits a valid name into its parent directory ("." if none) and last component.
void SplitImageName(std::string_view name, std::string* parent, std::string* base);

// Opens the source image `name` read-only strictly beneath `dirfd` (I5): no "..", no
// symlinks, no magic links, whatever the name says. O_NONBLOCK: opening a FIFO would
// otherwise wait for a writer (callers refuse what is not a regular file right after).
// Returns the fd, or -1 with errno (EXDEV/ELOOP for an escape or a symlink).
int OpenImageBeneath(int dirfd, const std::string& name);

}  // namespace migratefs::net
