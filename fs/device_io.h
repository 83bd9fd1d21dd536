// How the session talks to /dev/fuse: the read, writev and splice calls libfuse makes
// on the connection, installed with fuse_session_custom_io on every session (Mount and
// Resume), and the WRITE size that lets libfuse receive through a pipe.
//
// Why the daemon owns these calls (all found with a worker killed under fio, see
// tests/daemon_restart_test.cc):
//  - A request is taken off the kernel's queue when a worker reads it. The kernel
//    copies it into the reader's buffer; if a page of that buffer is not yet mapped
//    and the worker has a SIGKILL pending (the supervisor kills hung or upgraded
//    workers), the copy fails and the kernel ends the request with EIO at once,
//    before it reaches the processing queue that FUSE_NOTIFY_RESEND replays: a
//    writeback WRITE lost that way surfaces as EIO on the VM's fsync. libfuse
//    mallocs each worker's 1 MiB buffer and first touches it through that copy, so
//    every new worker thread has the window. Read() writes one byte per page of a
//    buffer the first time its thread sees it, so the kernel's copy finds every page
//    present (get_user_pages' fast path, which does not look at signals).
//  - Through a pipe (SPLICE_READ) the kernel hands over page references, no copy
//    into user memory, so the window does not exist at all. libfuse 3.14 uses the
//    pipe only if it holds max_write + 4 KiB (its header room); pipes larger than
//    /proc/sys/fs/pipe-max-size (1 MiB by default) need CAP_SYS_RESOURCE, which
//    containers and this project's CI lack. With max_write at libfuse's 1 MiB the
//    pipe cannot grow to 1 MiB + 4 KiB and libfuse silently reads every request into
//    memory. SplicedMaxWrite() picks the size that fits.
//  - The one writev that carries the INIT reply gets flags libfuse 3.14 cannot ask
//    for (init_reply.h).
#pragma once

#include <fuse_lowlevel.h>

#include <cstddef>

namespace migratefs::fs {

// Routes se's /dev/fuse I/O (fd: its mounted fd) through the calls above. 0 or -errno.
int InstallDeviceIo(fuse_session* se, int fd);

// The largest max_write (a multiple of the page size, at most 1 MiB) for which
// libfuse's receive pipe (max_write + 4 KiB, rounded up by the kernel to a power of
// two pages) can be grown by this process: 1 MiB when it may exceed pipe-max-size,
// otherwise (the largest pipe it may make) - 4 KiB. 0 if no pipe can be made.
size_t SplicedMaxWrite();

// Pages the prefault in Read() has touched since the process started (tests).
size_t PrefaultedPages();

}  // namespace migratefs::fs
