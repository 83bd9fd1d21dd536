// Answering the kernel's INIT with flags libfuse 3.14 cannot ask for, and with READs
// as large as libfuse can take although its WRITEs are smaller.
//
// libfuse builds the INIT reply from the capabilities it knows; FUSE_HANDLE_KILLPRIV_V2
// (kernel_protocol.h, setid.h) is not one of them. Without it the kernel asks the
// server for "security.capability" before every write(2) of a regular file
// (file_remove_privs; a FUSE super block lacks SB_NOSEC, so "none" is never
// remembered), and that GETXATTR queues behind the writeback WRITEs in flight: every
// small buffered write waits for the daemon. With it the kernel sets SB_NOSEC, asks
// once per inode, and leaves clearing set-id bits to the server.
//
// max_pages: libfuse sets it from max_write, and the kernel caps READs by it as well
// as WRITEs. WRITEs must fit libfuse's receive buffer and pipe (device_io.h: 1020 KiB
// where pipes may not exceed 1 MiB); READ requests are small and their replies are
// the daemon's own, so READs stay at 1 MiB (256 pages: the most the kernel allows
// by default) while the kernel still holds WRITEs to max_write.
//
// How: the session's /dev/fuse I/O is the daemon's own (device_io.h), and its writev
// hands every reply to AmendInitReply first; the one that carries the INIT reply is
// amended. A worker that takes a connection over (Session::Resume) adds
// nothing: the kernel keeps what the first INIT negotiated.
#pragma once

#include <fuse_lowlevel.h>

#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "fs/kernel_protocol.h"

namespace migratefs::fs {

// Called by the session's writev (device_io.cc) with each reply about to be written:
// amends the INIT reply ProcessInitAmending is answering on this thread; leaves every
// other reply alone.
void AmendInitReply(iovec* iov, int count);

// Has libfuse process `init` (the INIT request read from the connection) and applies
// `wanted` to libfuse's reply: those of its flags the kernel offered are added, and
// max_pages (if not 0) replaces libfuse's, which it derives from max_write. Needs
// InstallDeviceIo. Returns the flags added (0 when the kernel offered none of them).
uint32_t ProcessInitAmending(fuse_session* se, const std::vector<uint8_t>& init, const InitReplyAmendment& wanted);

}  // namespace migratefs::fs
