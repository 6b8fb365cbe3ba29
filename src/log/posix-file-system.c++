// keel: the real file layer of SegmentedLog (POSIX).
#include <keel/segmented-log.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace keel {

CorruptionError::CorruptionError(std::string file, uint64_t offset, const std::string& what)
    : std::runtime_error("keel: corrupt log: " + file + " at offset " + std::to_string(offset) +
                         ": " + what),
      file_(std::move(file)),
      offset_(offset) {}

void fatalIoError(const char* op, const std::string& path, int err) {
  std::fprintf(stderr,
               "keel: FATAL: %s of %s failed: %s (errno %d). The durability of the log can no "
               "longer be guaranteed; ending the process without retrying.\n",
               op, path.c_str(), std::strerror(err), err);
  std::fflush(stderr);
  std::abort();
}

Bytes File::map(uint64_t offset, uint64_t size) {
  if (size == 0) return Bytes();
  Bytes b = Bytes::uninitialized(size_t(size));
  if (pread(b.mutableData(), size_t(size), offset) != size) throw CorruptionError("(file)", offset, "short read");
  return b;
}

namespace {

[[noreturn]] void throwErrno(const char* op, const std::string& path) {
  int err = errno;
  throw std::system_error(err, std::generic_category(), std::string(op) + " " + path);
}

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { ::close(fd_); }

  size_t pread(void* buf, size_t size, uint64_t offset) const override {
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::pread(fd_, static_cast<char*>(buf) + done, size - done, off_t(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        throwErrno("pread", path_);
      }
      if (n == 0) break;
      done += size_t(n);
    }
    return done;
  }

  void pwrite(const void* buf, size_t size, uint64_t offset) override {
    size_t done = 0;
    while (done < size) {
      ssize_t n =
          ::pwrite(fd_, static_cast<const char*>(buf) + done, size - done, off_t(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        // A failed write leaves the file in an unknown state: as fatal as a failed sync.
        fatalIoError("pwrite", path_, errno);
      }
      done += size_t(n);
    }
  }

  void truncate(uint64_t size) override {
    if (::ftruncate(fd_, off_t(size)) != 0) fatalIoError("ftruncate", path_, errno);
  }

  uint64_t size() const override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) throwErrno("fstat", path_);
    return uint64_t(st.st_size);
  }

  void willNeed(uint64_t offset, uint64_t size) override {
    ::posix_fadvise(fd_, off_t(offset), off_t(size), POSIX_FADV_WILLNEED);
  }

  void startWriteback(uint64_t offset, uint64_t size) override {
    // Best effort: an error here shows again, and is fatal, at the sync() that follows.
    ::sync_file_range(fd_, off_t(offset), off_t(size), SYNC_FILE_RANGE_WRITE);
  }

  void sync() override {
    if (::fdatasync(fd_) != 0) fatalIoError("fdatasync", path_, errno);
  }

  Bytes map(uint64_t offset, uint64_t size) override {
    if (size == 0) return Bytes();
    if (offset + size > this->size()) throw CorruptionError(path_, offset, "mapping past the end of the file");
    uint64_t from = offset & ~uint64_t(::sysconf(_SC_PAGESIZE) - 1);
    size_t len = size_t(offset + size - from);
    void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd_, off_t(from));
    if (p == MAP_FAILED) throwErrno("mmap", path_);
    return Bytes::external(static_cast<uint8_t*>(p) + (offset - from), size_t(size), [p, len] { ::munmap(p, len); });
  }

 private:
  int fd_;
  std::string path_;
};

class PosixFileSystem final : public FileSystem {
 public:
  std::unique_ptr<File> open(const std::string& path, bool create) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (fd < 0) throwErrno("open", path);
    return std::make_unique<PosixFile>(fd, path);
  }
  std::unique_ptr<File> openDirect(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) return nullptr;
    void* block = std::aligned_alloc(4096, 4096);
    bool ok = block && (std::memset(block, 0, 4096), ::pwrite(fd, block, 4096, 0) == 4096);
    std::free(block);
    if (!ok) {
      ::close(fd);
      return nullptr;
    }
    return std::make_unique<PosixFile>(fd, path);
  }
  bool exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }
  void rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) fatalIoError("rename", from + " -> " + to, errno);
  }
  void remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) fatalIoError("unlink", path, errno);
  }
  void makeDir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throwErrno("mkdir", path);
  }
  void syncDir(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fatalIoError("open (for fsync) of directory", path, errno);
    if (::fsync(fd) != 0) fatalIoError("fsync of directory", path, errno);
    ::close(fd);
  }
  std::vector<std::string> list(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (!d) throwErrno("opendir", path);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    ::closedir(d);
    return names;
  }
};

}  // namespace

FileSystem& posixFileSystem() {
  static PosixFileSystem fs;
  return fs;
}

}  // namespace keel
