// The checkpoint as a zip archive, read by calmkit itself before and while LibTorch reads it: the central
// directory (zip64 included) walked and checked record by record, and a reader for LibTorch's loader that checks
// each record's CRC-32 as its bytes arrive and remembers which buffer holds which record, so that every tensor
// can be matched to the bytes behind it. Written here rather than taken from minizip or libzip because only the
// directory walk is needed (about 150 lines) and LibTorch must read through its own ReadAdapterInterface.
#pragma once
#include <caffe2/serialize/read_adapter_interface.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace calmkit::archive {

// Random-access bytes: an open file or a buffer.
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  // Up to n bytes at pos; fewer only at the end or on a read error.
  virtual size_t readAt(uint64_t pos, void* buf, size_t n) const = 0;
};

// A regular file, opened without ever blocking: FIFOs, devices, directories and symlink loops are refused at
// once with ERR_MODEL_FILE naming the reason (the open uses O_NONBLOCK and fstat decides before any read).
class FileSource final : public Source {
 public:
  explicit FileSource(const std::string& path);
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  uint64_t size() const override { return size_; }
  size_t readAt(uint64_t pos, void* buf, size_t n) const override;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
};

class MemorySource final : public Source {
 public:
  MemorySource(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t size() const override { return size_; }
  size_t readAt(uint64_t pos, void* buf, size_t n) const override;

 private:
  const uint8_t* data_;
  size_t size_;
};

struct Record {
  std::string name;
  uint64_t headerOffset = 0;  // the local file header
  uint64_t dataOffset = 0;    // the first byte of the stored data
  uint64_t size = 0;          // bytes of the record's content
  uint64_t stored = 0;        // bytes it takes in the file (= size unless deflated)
  bool deflated = false;      // method 8; only small records that are not tensor storages may be
  uint32_t crc32 = 0;         // as the central directory gives it
};

// Every record of the archive, in central-directory order. Throws ERR_MODEL_FORMAT (`label: ...`) for anything a
// zip reader would have to guess at: no end record, a directory outside the file, an encrypted record, a
// compressed tensor storage, a local header that disagrees with the directory, data past the end of the file,
// overlapping records. torch.jit.save deflates some of its small code records; those (at most kMaxDeflated
// bytes each) are inflated and CRC-checked here when `checkCrc`, since LibTorch's reader inflates them itself.
inline constexpr uint64_t kMaxDeflated = uint64_t(64) << 20;
std::vector<Record> readDirectory(const Source& src, const std::string& label, bool checkCrc = true);

// Whether a record holds a tensor storage (`<archive>/data/<key>` or `<archive>/constants/<key>`).
bool isStorageRecord(const std::string& name);

// zlib's CRC-32 (the zip polynomial), from libdeflate (PCLMUL-accelerated where the CPU has it).
uint32_t crc32(uint32_t crc, const void* data, size_t n);

// The reader LibTorch's loader gets. A read that is exactly one record's data is checked against the record's
// CRC-32 (when `checkCrc`) and its buffer remembered. A damaged record outside `<archive>/data/` (the pickles and
// code the loader interprets) fails the read at once, so the loader never parses altered bytes; a damaged
// tensor record is only noted, so that the tensor it feeds can be named afterwards.
class CheckedReader final : public caffe2::serialize::ReadAdapterInterface {
 public:
  CheckedReader(std::shared_ptr<const Source> src, std::vector<Record> records, bool checkCrc);
  size_t size() const override;
  size_t read(uint64_t pos, void* buf, size_t n, const char* what = "") const override;

  const std::vector<Record>& records() const { return records_; }
  // The record whose bytes were read whole into the buffer that starts at p, or null.
  const Record* recordAt(const void* p) const;
  // Records whose bytes did not match their CRC-32 (indices into records()).
  const std::vector<size_t>& damaged() const { return damaged_; }
  // True when a read was refused because the record it asked for was damaged.
  bool refused() const { return refused_; }

 private:
  std::shared_ptr<const Source> src_;
  std::vector<Record> records_;
  bool checkCrc_;
  std::unordered_map<uint64_t, size_t> byDataOffset_;
  mutable std::unordered_map<const void*, size_t> byBuffer_;
  mutable std::vector<size_t> damaged_;
  mutable bool refused_ = false;
};

}  // namespace calmkit::archive
