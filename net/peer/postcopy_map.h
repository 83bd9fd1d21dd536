// The target's record of which blocks of a copy in postcopy are still only on the
// source, kept in a file so that a daemon restarted on the target (a new worker after a
// crash or an upgrade, or the whole daemon started again) takes the postcopy over, and
// the VM running on the copy sees a pause, not EIO.
//
// Who calls what:
// - The receiving session creates the map at the hand-over (wire kPostcopy), before the
//   copy is marked "postcopy", and gives it to the PostcopyImage, which marks a block
//   local the moment it becomes local in memory (PostcopyImage's contract).
// - At daemon start, the scan of SRC (GuardPartialCopies) opens the map of every copy
//   marked "postcopy"; a map that is missing or not that copy's leaves the copy guarded
//   with EIO, as before maps existed.
// - The session's finish of the copy (every block local) discards the map.
//
// Why a block marked local here is local in the file: the mark is made after the
// block's bytes were written (an arrival) or before the VM's bytes can reach it (a
// claim: a write covering the block whole, a truncate cutting it off), and both the
// mark and the bytes are in the page cache at once. A daemon crash keeps the page cache,
// so the map and the copy agree after it. A host crash does not: the map lives in
// state_dir, by default /run/migratefs, a tmpfs that dies with the host, so a reboot
// finds no map and the copy is guarded (the source still holds every block).
//
// File: state_dir/postcopy-<dev>-<ino>.map. A header (magic, version, the copy's dev,
// ino and identity, the size handed over, block size, postcopy timeout), then one byte
// per block: 1 remote, 0 local. Mapped MAP_SHARED: a store is in the file when it is
// made, and no SIGKILL takes it back. A byte, not a bit, per block, so marks of two
// blocks never race on one word.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "migratefs/status.h"

namespace migratefs::net {

class PostcopyMap {
 public:
  static std::string PathFor(const std::string& dir, dev_t dev, ino_t ino);

  // A new map (replacing any file of that name; creating `dir` if needed): the blocks
  // set in `remote` (a PostcopyPayload bitmap, wire.h) are remote. On error nothing of
  // an older map of that name is left behind. Errors: kIo naming the path.
  static Result<std::unique_ptr<PostcopyMap>> Create(const std::string& dir, dev_t dev, ino_t ino,
                                                     const std::string& identity, uint64_t size, uint32_t block_size,
                                                     std::chrono::milliseconds timeout, const std::string& remote);
  // The map an earlier daemon left for this copy. kNotFound: there is none;
  // kInvalidArgument: it is not this copy's (another identity) or is damaged.
  static Result<std::unique_ptr<PostcopyMap>> Open(const std::string& dir, dev_t dev, ino_t ino,
                                                   const std::string& identity);

  ~PostcopyMap();  // unmaps; the file stays
  PostcopyMap(const PostcopyMap&) = delete;
  PostcopyMap& operator=(const PostcopyMap&) = delete;

  uint64_t size() const;
  uint32_t block_size() const;
  std::chrono::milliseconds timeout() const;
  uint64_t blocks() const { return blocks_; }
  bool remote(uint64_t block) const;
  // The remote blocks as a PostcopyPayload bitmap (what PostcopyImage starts from).
  std::string RemoteBitmap() const;

  // Block `block` is local from now on. Thread-safe for distinct blocks.
  void MarkLocal(uint64_t block);
  // The postcopy ended (every block local): removes the file.
  void Discard();

  const std::string& path() const { return path_; }

 private:
  struct Header;
  PostcopyMap(std::string path, void* base, size_t len);
  Header* header() const;
  uint8_t* bytes() const;

  const std::string path_;
  void* base_;
  size_t len_;
  uint64_t blocks_;
};

}  // namespace migratefs::net
