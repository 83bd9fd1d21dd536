// The ImageHook contract as seen from the mount: what reaches the hook, vetoes, and
// deferred completions.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/fs_test_util.h"

namespace migratefs::fs::testing {
namespace {

using namespace std::chrono_literals;

class RecordingHook : public ImageHook {
 public:
  int CheckWriteOpen() override {
    Add("open");
    return open_err.load();
  }
  int BeforeModify() override { return before_err.load(); }
  int CheckNamespaceChange() override {
    Add("ns");
    return ns_err.load();
  }
  void AfterWrite(uint64_t off, const void* data, size_t len, Completion done) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      events_.push_back("write " + std::to_string(off) + " " + std::to_string(len));
      bytes_[off] = std::string(static_cast<const char*>(data), len);
      if (defer) {
        deferred_.push_back(done);
        return;
      }
    }
    done.Complete(0);
  }
  void AfterResize(uint64_t size) override { Add("resize " + std::to_string(size)); }
  void AfterZero(uint64_t off, uint64_t len) override {
    Add("zero " + std::to_string(off) + " " + std::to_string(len));
  }
  void AfterSync(bool datasync, Completion done) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      events_.push_back(datasync ? "datasync" : "sync");
      if (defer) {
        deferred_.push_back(done);
        return;
      }
    }
    done.Complete(0);
  }

  void Add(const std::string& e) {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(e);
  }
  std::vector<std::string> Take() {
    std::lock_guard<std::mutex> l(mu_);
    return std::exchange(events_, {});
  }
  std::map<uint64_t, std::string> Bytes() {
    std::lock_guard<std::mutex> l(mu_);
    return bytes_;
  }
  size_t Deferred() {
    std::lock_guard<std::mutex> l(mu_);
    return deferred_.size();
  }
  void CompleteAll(int err) {
    std::vector<Completion> d;
    {
      std::lock_guard<std::mutex> l(mu_);
      d.swap(deferred_);
    }
    for (Completion& c : d) c.Complete(err);
  }

  std::atomic<int> open_err{0}, before_err{0}, ns_err{0};
  std::atomic<bool> defer{false};

 private:
  std::mutex mu_;
  std::vector<std::string> events_;
  std::map<uint64_t, std::string> bytes_;
  std::vector<Completion> deferred_;
};

class FsHook : public ::testing::Test {
 protected:
  explicit FsHook(const char* opts = "allow_other") : m_(opts), hook_(std::make_shared<RecordingHook>()) {}
  // Creates `name` in SRC (size bytes of zeros) and attaches the hook to it.
  std::string Watch(const std::string& name, size_t size = 0) {
    WriteFile(m_.src() + "/" + name, std::string(size, '\0'));
    struct stat st;
    EXPECT_EQ(stat((m_.src() + "/" + name).c_str(), &st), 0);
    m_.session().hooks().Attach(st.st_dev, st.st_ino, hook_);
    return m_.mnt() + "/" + name;
  }
  void Unwatch(const std::string& name) {
    struct stat st;
    stat((m_.src() + "/" + name).c_str(), &st);
    m_.session().hooks().Detach(st.st_dev, st.st_ino, hook_.get());
  }
  InProcessMount m_;
  std::shared_ptr<RecordingHook> hook_;
};

char* AlignedCopy(const std::string& s) {
  void* p = nullptr;
  posix_memalign(&p, 4096, std::max<size_t>(s.size(), 4096));
  memcpy(p, s.data(), s.size());
  return static_cast<char*>(p);
}

using Events = std::vector<std::string>;

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST_F(FsHook, SeesEveryModificationWithOffsets) {
  std::string path = Watch("img");
  int fd = open(path.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(hook_->Take(), Events{"open"});
  std::string a = Pattern(4096, 1), b = Pattern(512, 2);
  char* abuf = AlignedCopy(a);
  ASSERT_EQ(pwrite(fd, abuf, 4096, 8192), 4096);
  ASSERT_EQ(pwrite(fd, b.data(), 512, 100), 512);  // unaligned O_DIRECT
  free(abuf);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096), 0);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_ZERO_RANGE, 65536, 8192), 0);
  ASSERT_EQ(fallocate(fd, 0, 0, 2 << 20), 0);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 << 20), 0);
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(fdatasync(fd), 0);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(hook_->Take(), (Events{"write 8192 4096", "write 100 512", "resize 1048576", "zero 4096 4096",
                                   "zero 65536 8192", "resize 2097152", "sync", "datasync", "datasync"}));
  auto bytes = hook_->Bytes();
  EXPECT_TRUE(bytes[8192] == a);
  EXPECT_TRUE(bytes[100] == b);
  // Truncate by name, and O_TRUNC.
  ASSERT_EQ(truncate(path.c_str(), 12345), 0);
  fd = open(path.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(hook_->Take(), (Events{"resize 12345", "open", "resize 0", "datasync"}));
  // Read-only opens and reads are not modifications.
  fd = open(path.c_str(), O_RDONLY);
  char c;
  pread(fd, &c, 1, 0);
  close(fd);
  EXPECT_EQ(hook_->Take(), Events{"datasync"});  // the close's FLUSH
}

// Direct writes of two threads to one image reach the hook together: the open reply
// carries FOPEN_PARALLEL_DIRECT_WRITES, without which the kernel holds the inode lock
// across each synchronous direct write and the second thread waits in the kernel
// until the first one's reply (in phase 3: the peer's ack).
TEST_F(FsHook, DirectWritesOfTwoThreadsReachTheHookTogether) {
  std::string path = Watch("img", 1 << 20);  // writes inside the file: no size change
  int fd = open(path.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0) << strerror(errno);
  hook_->defer = true;
  char* buf = AlignedCopy(Pattern(4096, 7));
  auto first = std::async(std::launch::async, [&] { return pwrite(fd, buf, 4096, 0); });
  ASSERT_TRUE(WaitFor([&] { return hook_->Deferred() == 1; }, 5s));
  auto second = std::async(std::launch::async, [&] { return pwrite(fd, buf, 4096, 65536); });
  const bool together = WaitFor([&] { return hook_->Deferred() == 2; }, 3s);
  hook_->defer = false;
  hook_->CompleteAll(0);
  ASSERT_EQ(first.wait_for(10s), std::future_status::ready);
  ASSERT_EQ(second.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(together) << "the second direct write waited in the kernel for the first one's reply";
  EXPECT_EQ(first.get(), 4096);
  EXPECT_EQ(second.get(), 4096);
  free(buf);
  close(fd);
}

// With the writeback cache the kernel sends its own (coalesced) WRITEs; by the time
// fsync returns they have all reached the hook, with the bytes.
TEST_F(FsHook, SeesBufferedWritesBeforeFsyncReturns) {
  std::string path = Watch("img");
  int fd = open(path.c_str(), O_RDWR);
  std::string data = Pattern(300000, 3);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 5000), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);
  std::string model(5000 + data.size(), '\0');
  std::string seen(model.size(), '\0');
  std::vector<bool> covered(model.size(), false);
  model.replace(5000, data.size(), data);
  for (auto& [off, bytes] : hook_->Bytes()) {
    ASSERT_LE(off + bytes.size(), model.size());
    seen.replace(off, bytes.size(), bytes);
    for (size_t i = 0; i < bytes.size(); i++) covered[off + i] = true;
  }
  for (size_t i = 5000; i < model.size(); i++) ASSERT_TRUE(covered[i]) << "byte " << i << " never reported";
  EXPECT_TRUE(seen.substr(5000) == data);
  close(fd);
}

// The same without SPLICE_READ: payloads arrive in libfuse's buffer instead of a pipe.
class FsHookNoSplice : public FsHook {
 protected:
  FsHookNoSplice() : FsHook("allow_other,nosplice") {}
};

TEST_F(FsHookNoSplice, SeesBufferedAndDirectWrites) {
  std::string path = Watch("img");
  int fd = open(path.c_str(), O_RDWR);
  std::string data = Pattern(200000, 4);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
  fd = open(path.c_str(), O_RDWR | O_DIRECT);
  std::string d2 = Pattern(65536, 5);
  char* buf = AlignedCopy(d2);
  ASSERT_EQ(pwrite(fd, buf, d2.size(), 262144), static_cast<ssize_t>(d2.size()));
  free(buf);
  close(fd);
  std::string seen(262144 + d2.size(), '\0');
  for (auto& [off, bytes] : hook_->Bytes()) seen.replace(off, bytes.size(), bytes);
  EXPECT_TRUE(seen.substr(0, data.size()) == data);
  EXPECT_TRUE(seen.substr(262144) == d2);
}

TEST_F(FsHook, VetoesBecomeTheCallersErrno) {
  std::string path = Watch("img", 8192);
  hook_->open_err = EBUSY;
  EXPECT_EQ(open(path.c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EBUSY);
  EXPECT_EQ(open(path.c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EBUSY);
  int ro = open(path.c_str(), O_RDONLY);
  EXPECT_GE(ro, 0) << "read-only opens are not write-opens";
  close(ro);
  hook_->open_err = 0;

  hook_->before_err = EROFS;
  int fd = open(path.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0);
  char* buf = AlignedCopy(std::string(4096, 'x'));
  EXPECT_EQ(pwrite(fd, buf, 4096, 0), -1);
  EXPECT_EQ(errno, EROFS);
  free(buf);
  EXPECT_EQ(ftruncate(fd, 0), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), -1);
  EXPECT_EQ(errno, EROFS);
  close(fd);
  EXPECT_EQ(open(path.c_str(), O_WRONLY | O_TRUNC), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(ReadFile(m_.src() + "/img"), std::string(8192, '\0')) << "a vetoed modification changed the file";
  hook_->before_err = 0;

  hook_->ns_err = EBUSY;
  WriteFile(m_.mnt() + "/other", "o");
  EXPECT_EQ(unlink(path.c_str()), -1);
  EXPECT_EQ(errno, EBUSY);
  EXPECT_EQ(rename(path.c_str(), (m_.mnt() + "/moved").c_str()), -1);
  EXPECT_EQ(errno, EBUSY);
  EXPECT_EQ(rename((m_.mnt() + "/other").c_str(), path.c_str()), -1) << "renaming over a watched file";
  EXPECT_EQ(errno, EBUSY);
  EXPECT_EQ(unlink((m_.mnt() + "/other").c_str()), 0) << "unwatched files are not affected";
  hook_->ns_err = 0;
  EXPECT_EQ(rename(path.c_str(), (m_.mnt() + "/moved").c_str()), 0);
}

// A hook that holds the Completion holds the caller's write, not a worker thread:
// with a single worker the mount keeps serving other requests meanwhile.
class FsHookOneThread : public FsHook {
 protected:
  FsHookOneThread() : FsHook("allow_other,max_threads=1") {}
};

TEST_F(FsHookOneThread, DeferredCompletionDelaysTheWrite) {
  std::string path = Watch("img");
  WriteFile(m_.mnt() + "/other", "still served");
  hook_->defer = true;
  int fd = open(path.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(fd, 0);
  auto write = std::async(std::launch::async, [&] {
    char* buf = AlignedCopy(std::string(4096, 'w'));
    ssize_t n = pwrite(fd, buf, 4096, 0);
    free(buf);
    return n;
  });
  for (int i = 0; i < 200 && hook_->Deferred() == 0; i++) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(hook_->Deferred(), 1u);
  EXPECT_EQ(write.wait_for(300ms), std::future_status::timeout) << "write returned before Complete()";
  EXPECT_EQ(ReadFile(m_.mnt() + "/other"), "still served");
  hook_->CompleteAll(0);
  ASSERT_EQ(write.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(write.get(), 4096);

  // A completion with an error fails the write with that errno; fsync defers too.
  auto failing = std::async(std::launch::async, [&] {
    char* buf = AlignedCopy(std::string(4096, 'e'));
    ssize_t n = pwrite(fd, buf, 4096, 4096);
    int err = errno;
    free(buf);
    return n < 0 ? -err : n;
  });
  for (int i = 0; i < 200 && hook_->Deferred() == 0; i++) std::this_thread::sleep_for(5ms);
  hook_->CompleteAll(EIO);
  EXPECT_EQ(failing.get(), -EIO);
  auto sync = std::async(std::launch::async, [&] { return fsync(fd); });
  for (int i = 0; i < 200 && hook_->Deferred() == 0; i++) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(sync.wait_for(200ms), std::future_status::timeout);
  hook_->CompleteAll(0);
  EXPECT_EQ(sync.get(), 0);
  hook_->defer = false;
  close(fd);
}

TEST_F(FsHook, AttachBeforeFirstLookupAndDetach) {
  // Attached before the mount ever saw the file: the inode picks it up on lookup.
  std::string path = Watch("fresh");
  WriteFile(path, "abc");
  auto events = hook_->Take();
  EXPECT_NE(std::find(events.begin(), events.end(), "write 0 3"), events.end());
  Unwatch("fresh");
  WriteFile(path, "defg");
  EXPECT_TRUE(hook_->Take().empty()) << "a detached hook was called";
}

// The receiver writes images into SRC without passing the mount. With the writeback
// cache the kernel keeps the size it cached for as long as it keeps the inode, and
// it may keep it even with no open file left (an asynchronous RELEASE holds it until
// the daemon answers), so Detach alone cannot promise a fresh size. What the receiver
// does, RefreshKernelSize then Detach, must: a reader holding the file open through
// the mount pins the inode here, the case where the kernel would keep the old size.
TEST_F(FsHook, RefreshAndDetachMakeTheKernelSeeAFileChangedInSource) {
  WriteFile(m_.src() + "/received.img", "v1");
  const std::string mounted = m_.mnt() + "/received.img";
  struct stat st;
  ASSERT_EQ(stat(mounted.c_str(), &st), 0);
  ASSERT_EQ(st.st_size, 2);
  EXPECT_EQ(ReadFile(mounted), "v1");
  const int reader = open(mounted.c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  std::string path = Watch("received.img", 0);  // Watch rewrites it in SRC: size 0
  std::string image = Pattern(100000, 11);
  WriteFile(m_.src() + "/received.img", image);  // behind the mount's back
  struct stat src_st;
  ASSERT_EQ(stat((m_.src() + "/received.img").c_str(), &src_st), 0);
  m_.session().hooks().RefreshKernelSize(src_st.st_dev, src_st.st_ino);
  Unwatch("received.img");
  ASSERT_EQ(fstat(reader, &st), 0);
  EXPECT_EQ(st.st_size, 100000);
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 100000);
  EXPECT_TRUE(ReadFile(path) == image);
  std::string via_reader(image.size(), '\0');
  EXPECT_EQ(pread(reader, via_reader.data(), via_reader.size(), 0), static_cast<ssize_t>(image.size()));
  EXPECT_TRUE(via_reader == image) << "the held-open file still shows pages cached before the change";
  close(reader);
}

// copy_file_range onto a watched file is answered EOPNOTSUPP, so the kernel copies
// through ordinary WRITEs and the hook sees the bytes.
TEST_F(FsHook, CopyFileRangeOntoWatchedFileReachesTheHook) {
  std::string path = Watch("dst");
  std::string data = Pattern(100000, 9);
  WriteFile(m_.mnt() + "/srcfile", data);
  int in = open((m_.mnt() + "/srcfile").c_str(), O_RDONLY);
  int out = open(path.c_str(), O_WRONLY);
  loff_t oi = 0, oo = 0;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = copy_file_range(in, &oi, out, &oo, data.size() - done, 0);
    ASSERT_GT(n, 0) << strerror(errno);
    done += n;
  }
  fsync(out);
  close(in);
  close(out);
  std::string seen(data.size(), '\0');
  for (auto& [off, bytes] : hook_->Bytes()) seen.replace(off, bytes.size(), bytes);
  EXPECT_TRUE(seen == data);
  EXPECT_TRUE(ReadFile(m_.src() + "/dst") == data);
}

}  // namespace
}  // namespace migratefs::fs::testing
