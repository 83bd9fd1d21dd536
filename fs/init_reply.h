// Answering the kernel's INIT with flags libfuse 3.14 cannot ask for.
//
// libfuse builds the INIT reply from the capabilities it knows; FUSE_HANDLE_KILLPRIV_V2
// (kernel_protocol.h, setid.h) is not one of them. Without it the kernel asks the
// server for "security.capability" before every write(2) of a regular file
// (file_remove_privs; a FUSE super block lacks SB_NOSEC, so "none" is never
// remembered), and that GETXATTR queues behind the writeback WRITEs in flight: every
// small buffered write waits for the daemon. With it the kernel sets SB_NOSEC, asks
// once per inode, and leaves clearing set-id bits to the server.
//
// How: the session's /dev/fuse I/O is the daemon's own (device_io.h), and its writev
// hands every reply to AmendInitReply first; the one that carries the INIT reply gets
// the flags added. A worker that takes a connection over (Session::Resume) adds
// nothing: the kernel keeps what the first INIT negotiated.
#pragma once

#include <fuse_lowlevel.h>

#include <sys/uio.h>

#include <cstdint>
#include <vector>

namespace migratefs::fs {

// Called by the session's writev (device_io.cc) with each reply about to be written:
// adds the flags to the INIT reply ProcessInitAddingFlags is answering on this thread;
// leaves every other reply alone.
void AmendInitReply(iovec* iov, int count);

// Has libfuse process `init` (the INIT request read from the connection) and adds
// those of `wanted` that the kernel offered to the flags of libfuse's reply. Needs
// InstallDeviceIo. Returns the flags added (0 when the kernel offered none of them).
uint32_t ProcessInitAddingFlags(fuse_session* se, const std::vector<uint8_t>& init, uint32_t wanted);

}  // namespace migratefs::fs
