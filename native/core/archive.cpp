#include "core/archive.h"

#if CALMKIT_WITH_LIBDEFLATE
#include <libdeflate.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_set>

#include "core/error.h"
#include "core/files.h"

namespace calmkit::archive {
namespace {

// Zip signatures and fixed sizes (APPNOTE.TXT 4.3).
constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50, kLocator64Sig = 0x07064b50;
constexpr size_t kLocalBytes = 30, kCentralBytes = 46, kEndBytes = 22, kLocator64Bytes = 20, kEnd64Bytes = 56;
constexpr uint16_t kZip64Extra = 0x0001;
// Tensor storages are checked in chunks this size, each while it is still in cache after its read.
constexpr size_t kCrcChunk = size_t(4) << 20;

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
uint64_t u64(const uint8_t* p) { return uint64_t(u32(p)) | (uint64_t(u32(p + 4)) << 32); }

class Fail {
 public:
  explicit Fail(std::string label) : label_(std::move(label)) {}
  [[noreturn]] void operator()(const std::string& why) const {
    throw Error(code::kModelFormat, label_ + ": not a readable checkpoint archive: " + why);
  }
  const std::string& label() const { return label_; }

 private:
  std::string label_;
};

std::vector<uint8_t> readExactly(const Source& src, uint64_t pos, uint64_t n, const Fail& fail, const char* what) {
  if (pos > src.size() || n > src.size() - pos) fail(std::string(what) + " lies past the end of the file (truncated?)");
  std::vector<uint8_t> buf(static_cast<size_t>(n));
  if (src.readAt(pos, buf.data(), buf.size()) != buf.size()) fail(std::string("cannot read ") + what);
  return buf;
}

struct End {
  uint64_t entries = 0, cdSize = 0, cdOffset = 0, cdEnd = 0;  // cdEnd: where the directory must stop
};

// The end-of-central-directory record (the last one in the file: a comment may hold the signature too, so the
// search runs backwards from the end) and, when it defers to it, the zip64 one.
End readEnd(const Source& src, const Fail& fail) {
  const uint64_t size = src.size();
  if (size < kEndBytes) fail("the file is too short to be a zip archive (" + std::to_string(size) + " bytes)");
  const uint64_t tail = std::min<uint64_t>(size, kEndBytes + 0xFFFF);
  auto buf = readExactly(src, size - tail, tail, fail, "the end of the file");
  int64_t at = -1;
  for (int64_t i = static_cast<int64_t>(tail - kEndBytes); i >= 0; --i) {
    const uint8_t* p = buf.data() + i;
    if (u32(p) == kEndSig && static_cast<uint64_t>(i) + kEndBytes + u16(p + 20) == tail) {
      at = i;
      break;
    }
  }
  if (at < 0) fail("no end-of-central-directory record (truncated, or not a zip archive)");
  const uint8_t* e = buf.data() + at;
  const uint64_t endPos = size - tail + static_cast<uint64_t>(at);
  if (u16(e + 4) != 0 || u16(e + 6) != 0 || u16(e + 8) != u16(e + 10)) fail("multi-disk archives are not supported");
  End end;
  end.entries = u16(e + 10);
  end.cdSize = u32(e + 12);
  end.cdOffset = u32(e + 16);
  end.cdEnd = endPos;
  const bool zip64 = end.entries == 0xFFFF || end.cdSize == 0xFFFFFFFF || end.cdOffset == 0xFFFFFFFF;
  if (endPos >= kLocator64Bytes) {
    auto loc = readExactly(src, endPos - kLocator64Bytes, kLocator64Bytes, fail, "the zip64 locator");
    if (u32(loc.data()) == kLocator64Sig) {
      const uint64_t e64Pos = u64(loc.data() + 8);
      if (e64Pos > endPos - kLocator64Bytes || endPos - kLocator64Bytes - e64Pos < kEnd64Bytes)
        fail("the zip64 end record is out of place");
      auto e64 = readExactly(src, e64Pos, kEnd64Bytes, fail, "the zip64 end record");
      if (u32(e64.data()) != kEnd64Sig) fail("the zip64 locator points at no zip64 end record");
      if (u32(e64.data() + 16) != 0 || u32(e64.data() + 20) != 0 || u64(e64.data() + 24) != u64(e64.data() + 32)) {
        fail("multi-disk archives are not supported");
      }
      end.entries = u64(e64.data() + 32);
      end.cdSize = u64(e64.data() + 40);
      end.cdOffset = u64(e64.data() + 48);
      end.cdEnd = e64Pos;
    } else if (zip64) {
      fail("the end record defers to a zip64 record that is missing");
    }
  } else if (zip64) {
    fail("the end record defers to a zip64 record that is missing");
  }
  if (end.cdOffset > end.cdEnd || end.cdSize != end.cdEnd - end.cdOffset) {
    fail("the central directory's size and offset do not meet the end record (" + std::to_string(end.cdSize) +
         " bytes at " + std::to_string(end.cdOffset) + ", end record at " + std::to_string(end.cdEnd) + ")");
  }
  if (end.entries > end.cdSize / kCentralBytes)
    fail("the end record claims more entries than the central directory can hold");
  return end;
}

// The zip64 extended-information field replaces, in this order, whichever of the 32-bit fields are all ones.
void applyZip64(const uint8_t* extra, size_t len, uint64_t& size, uint64_t& comp, uint64_t& offset,
                const std::string& name, const Fail& fail) {
  const bool needSize = size == 0xFFFFFFFF, needComp = comp == 0xFFFFFFFF, needOffset = offset == 0xFFFFFFFF;
  if (!needSize && !needComp && !needOffset) return;
  for (size_t i = 0; i + 4 <= len;) {
    const uint16_t id = u16(extra + i), n = u16(extra + i + 2);
    if (i + 4 + n > len) break;
    if (id == kZip64Extra) {
      const uint8_t* p = extra + i + 4;
      size_t left = n;
      auto take = [&](uint64_t& v) {
        if (left < 8) fail("record '" + name + "' has a short zip64 field");
        v = u64(p);
        p += 8;
        left -= 8;
      };
      if (needSize) take(size);
      if (needComp) take(comp);
      if (needOffset) take(offset);
      return;
    }
    i += 4 + n;
  }
  fail("record '" + name + "' needs a zip64 field it does not have");
}

// A deflated record, inflated to its declared size and checked against its CRC-32 (LibTorch's reader inflates it
// again; these are a few small code records).
void checkDeflated(const Source& src, const Record& r, const Fail& fail) {
#if CALMKIT_WITH_LIBDEFLATE
  auto packed = readExactly(src, r.dataOffset, r.stored, fail, ("the data of '" + r.name + "'").c_str());
  std::vector<uint8_t> plain(static_cast<size_t>(r.size));
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  if (!d) throw std::bad_alloc();
  size_t got = 0;
  const auto res = libdeflate_deflate_decompress(d, packed.data(), packed.size(), plain.data(), plain.size(), &got);
  libdeflate_free_decompressor(d);
  if (res != LIBDEFLATE_SUCCESS || got != plain.size())
    fail("record '" + r.name + "' does not inflate to its declared " + std::to_string(r.size) + " bytes");
  if (libdeflate_crc32(0, plain.data(), plain.size()) != r.crc32) {
    throw Error(code::kModelFormat, fail.label() + ": record '" + r.name +
                                        "' is damaged: its bytes do not match the CRC-32 the archive stores (the file "
                                        "changed after it was written)");
  }
#else
  (void)src;
  (void)r;
  (void)fail;  // without libdeflate, LibTorch's own inflate is the only check of these few code records
#endif
}

}  // namespace

// `<archive>/data/<key>` and `<archive>/constants/<key>` hold tensor storages; the loader never interprets them.
bool isStorageRecord(const std::string& name) {
  const auto slash = name.find('/');
  if (slash == std::string::npos) return false;
  return name.compare(slash + 1, 5, "data/") == 0 || name.compare(slash + 1, 10, "constants/") == 0;
}

size_t MemorySource::readAt(uint64_t pos, void* buf, size_t n) const {
  if (pos >= size_ || n == 0) return 0;  // a zero-length read may come with a null buffer (found by fuzz_archive)
  const size_t k = static_cast<size_t>(std::min<uint64_t>(n, size_ - pos));
  std::memcpy(buf, data_ + pos, k);
  return k;
}

FileSource::FileSource(const std::string& path) {
  files::Opened f = files::openRegular(path);
  if (f.fd < 0) throw Error(code::kModelFile, (path.empty() ? std::string("model path") : path) + ": " + f.reason);
  fd_ = f.fd;
  size_ = f.size;
}

FileSource::~FileSource() {
  if (fd_ >= 0) ::close(fd_);
}

size_t FileSource::readAt(uint64_t pos, void* buf, size_t n) const { return files::readFully(fd_, pos, buf, n); }

#if CALMKIT_WITH_LIBDEFLATE
uint32_t crc32(uint32_t crc, const void* data, size_t n) { return libdeflate_crc32(crc, data, n); }
#else
// The reflected CRC-32 of zip, one byte at a time from a table (a fallback: several times slower than
// libdeflate's, which builds link when they find it).
uint32_t crc32(uint32_t crc, const void* data, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}
#endif

std::vector<Record> readDirectory(const Source& src, const std::string& label, bool checkCrc) {
  const Fail fail(label);
  const End end = readEnd(src, fail);
  auto cd = readExactly(src, end.cdOffset, end.cdSize, fail, "the central directory");
  std::vector<Record> records;
  records.reserve(static_cast<size_t>(end.entries));
  std::unordered_set<std::string> names;
  size_t at = 0;
  for (uint64_t i = 0; i < end.entries; ++i) {
    if (cd.size() - at < kCentralBytes || u32(cd.data() + at) != kCentralSig) {
      fail("central directory entry " + std::to_string(i) + " is damaged");
    }
    const uint8_t* h = cd.data() + at;
    const uint16_t flags = u16(h + 8), method = u16(h + 10);
    const size_t nameLen = u16(h + 28), extraLen = u16(h + 30), commentLen = u16(h + 32);
    if (cd.size() - at - kCentralBytes < nameLen + extraLen + commentLen)
      fail("central directory entry " + std::to_string(i) + " runs past the directory");
    Record r;
    r.name.assign(reinterpret_cast<const char*>(h + kCentralBytes), nameLen);
    r.crc32 = u32(h + 16);
    uint64_t comp = u32(h + 20);
    r.size = u32(h + 24);
    r.headerOffset = u32(h + 42);
    applyZip64(h + kCentralBytes + nameLen, extraLen, r.size, comp, r.headerOffset, r.name, fail);
    at += kCentralBytes + nameLen + extraLen + commentLen;
    if (r.name.empty() || r.name.find('\0') != std::string::npos)
      fail("central directory entry " + std::to_string(i) + " has no usable name");
    if (!names.insert(r.name).second) fail("record '" + r.name + "' appears twice");
    if (flags & 0x0001) fail("record '" + r.name + "' is encrypted");
    r.stored = comp;
    r.deflated = method == 8;
    if (method != 0 && method != 8)
      fail("record '" + r.name + "' uses compression method " + std::to_string(method) +
           " (only stored and deflated records are read)");
    if (r.deflated && isStorageRecord(r.name))
      fail("record '" + r.name + "' is a tensor storage but compressed; torch.jit.save stores them uncompressed");
    if (r.deflated && r.size > kMaxDeflated)
      fail("record '" + r.name + "' would inflate to " + std::to_string(r.size) + " bytes, beyond the " +
           std::to_string(kMaxDeflated) + " a compressed record may hold");
    if (!r.deflated && comp != r.size)
      fail("record '" + r.name + "' is stored with a compressed size (" + std::to_string(comp) + ") unlike its size (" +
           std::to_string(r.size) + ")");

    auto local = readExactly(src, r.headerOffset, kLocalBytes, fail, ("the local header of '" + r.name + "'").c_str());
    if (u32(local.data()) != kLocalSig) fail("record '" + r.name + "' has no local header where the directory says");
    const size_t localName = u16(local.data() + 26), localExtra = u16(local.data() + 28);
    auto name =
        readExactly(src, r.headerOffset + kLocalBytes, localName, fail, ("the local name of '" + r.name + "'").c_str());
    if (std::string(name.begin(), name.end()) != r.name)
      fail("record '" + r.name + "' has another name in its local header");
    if (u16(local.data() + 8) != method) fail("record '" + r.name + "': its local header gives another method");
    // Without a data descriptor (flag bit 3) the local header repeats the CRC and sizes; all ones defers to zip64.
    if (!(u16(local.data() + 6) & 0x0008)) {
      const uint32_t lcrc = u32(local.data() + 14), lcomp = u32(local.data() + 18), lsize = u32(local.data() + 22);
      const bool sizesOk = (lsize == 0xFFFFFFFF && lcomp == 0xFFFFFFFF) || (lsize == r.size && lcomp == r.stored);
      if (lcrc != r.crc32 || !sizesOk)
        fail("record '" + r.name + "': its local header disagrees with the central directory (CRC or size)");
    }
    r.dataOffset = r.headerOffset + kLocalBytes + localName + localExtra;
    if (r.dataOffset > end.cdOffset || r.stored > end.cdOffset - r.dataOffset) {
      fail("record '" + r.name + "' (" + std::to_string(r.stored) + " bytes at " + std::to_string(r.dataOffset) +
           ") runs into the central directory or past the end of the file");
    }
    if (r.deflated && checkCrc) checkDeflated(src, r, fail);
    records.push_back(std::move(r));
  }
  if (at != cd.size())
    fail("the central directory holds " + std::to_string(cd.size() - at) + " bytes after its last entry");
  // Records must not share bytes: sorted by position, each ends before the next one's header.
  std::vector<const Record*> byPos;
  for (const auto& r : records) byPos.push_back(&r);
  std::sort(byPos.begin(), byPos.end(),
            [](const Record* a, const Record* b) { return a->headerOffset < b->headerOffset; });
  for (size_t i = 1; i < byPos.size(); ++i) {
    if (byPos[i - 1]->dataOffset + byPos[i - 1]->stored > byPos[i]->headerOffset) {
      fail("records '" + byPos[i - 1]->name + "' and '" + byPos[i]->name + "' overlap");
    }
  }
  return records;
}

CheckedReader::CheckedReader(std::shared_ptr<const Source> src, std::vector<Record> records, bool checkCrc)
    : src_(std::move(src)), records_(std::move(records)), checkCrc_(checkCrc) {
  for (size_t i = 0; i < records_.size(); ++i) byDataOffset_.emplace(records_[i].dataOffset, i);
}

size_t CheckedReader::size() const { return static_cast<size_t>(src_->size()); }

size_t CheckedReader::read(uint64_t pos, void* buf, size_t n, const char*) const {
  auto it = byDataOffset_.find(pos);
  if (it == byDataOffset_.end() || n == 0 || records_[it->second].deflated || records_[it->second].size != n)
    return src_->readAt(pos, buf, n);
  const size_t index = it->second;
  const Record& r = records_[index];
  auto* p = static_cast<uint8_t*>(buf);
  size_t got = 0;
  if (checkCrc_) {
    uint32_t crc = 0;
    while (got < n) {
      const size_t want = std::min(kCrcChunk, n - got);
      const size_t k = src_->readAt(pos + got, p + got, want);
      crc = crc32(crc, p + got, k);
      got += k;
      if (k < want) break;
    }
    if (got == n && crc != r.crc32) {
      damaged_.push_back(index);
      if (!isStorageRecord(r.name)) {
        refused_ = true;
        return 0;
      }
    }
  } else {
    got = src_->readAt(pos, buf, n);
  }
  if (got == n) byBuffer_[buf] = index;
  return got;
}

const Record* CheckedReader::recordAt(const void* p) const {
  auto it = byBuffer_.find(p);
  return it == byBuffer_.end() ? nullptr : &records_[it->second];
}

}  // namespace calmkit::archive
