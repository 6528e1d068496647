"""Damages a calmkit checkpoint the ways a broken or hostile file would, for the loader's soundness tests.

usage: damage_checkpoint.py SRC JSON
JSON: {DST: operation, ...} (one torch start for all of them); tensors are named by state_dict key, and the zip record that holds a tensor is found by
its bytes (random weights make every record's content unique).
  {"empty": KEY}                 the tensor's record rewritten empty (the zip stays consistent: CRC and sizes fit)
  {"cut": [KEY, NBYTES]}         the tensor's record rewritten with only its first NBYTES (consistent zip)
  {"flip": [KEY, OFFSET]}        one byte inside the tensor's record changed in place (its CRC left as it was)
  {"flip_record": [SUFFIX, OFFSET]}  the same in the record whose name ends with SUFFIX (e.g. "/data.pkl")
  {"size_field": [KEY, DELTA]}   the central directory's two size fields of the tensor's record moved by DELTA
  {"value": [KEY, INDEX, "nan"|"inf"|"-inf"]}  element INDEX (flat) set, then saved anew by torch (consistent)
  {"row": [KEY, ROW, "nan"]}     a whole row (first axis) set, then saved anew
"""
import json
import struct
import sys
import zipfile

import torch


def record_of(src, key):
    t = torch.jit.load(src).state_dict()[key]
    want = t.contiguous().numpy().tobytes()
    with zipfile.ZipFile(src) as z:
        hits = [i for i in z.infolist() if i.file_size == len(want) and z.read(i) == want]
    if len(hits) != 1:
        raise SystemExit(f"damage_checkpoint: {len(hits)} records hold the bytes of {key}")
    return hits[0]


def rewrite(src, dst, name, data):
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for info in z.infolist():
            out.writestr(info.filename, data if info.filename == name else z.read(info), zipfile.ZIP_STORED)


def data_offset(buf, info):
    name_len, extra_len = struct.unpack_from("<HH", buf, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


def central_entry(buf, name):
    at = buf.rfind(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack_from("<HII", buf, at + 10)
    pos = cd_offset
    for _ in range(count):
        n, e, c = struct.unpack_from("<HHH", buf, pos + 28)
        if buf[pos + 46 : pos + 46 + n].decode() == name:
            return pos
        pos += 46 + n + e + c
    raise SystemExit(f"damage_checkpoint: no central entry for {name}")


def main():
    src, jobs = sys.argv[1], json.loads(sys.argv[2])
    for dst, op in jobs.items():
        damage(src, dst, op)


def damage(src, dst, op):
    (kind, arg), = op.items()
    if kind in ("value", "row"):
        m = torch.jit.load(src)
        key, where, what = arg
        t = m.state_dict()[key]
        v = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}[what]
        with torch.no_grad():
            if kind == "value":
                t.view(-1)[where] = v
            else:
                t[where] = v
        torch.jit.save(m, dst)
        return
    if kind in ("empty", "cut"):
        key = arg if kind == "empty" else arg[0]
        info = record_of(src, key)
        with zipfile.ZipFile(src) as z:
            data = z.read(info)
        rewrite(src, dst, info.filename, b"" if kind == "empty" else data[: arg[1]])
        return
    buf = bytearray(open(src, "rb").read())
    if kind == "flip":
        info = record_of(src, arg[0])
        buf[data_offset(buf, info) + arg[1]] ^= 0x40
    elif kind == "flip_record":
        with zipfile.ZipFile(src) as z:
            info = next(i for i in z.infolist() if i.filename.endswith(arg[0]))
        buf[data_offset(buf, info) + arg[1]] ^= 0x01
    elif kind == "size_field":
        info = record_of(src, arg[0])
        pos = central_entry(buf, info.filename)
        comp, size = struct.unpack_from("<II", buf, pos + 20)
        struct.pack_into("<II", buf, pos + 20, comp + arg[1], size + arg[1])
    else:
        raise SystemExit(f"damage_checkpoint: unknown operation {kind}")
    open(dst, "wb").write(bytes(buf))


if __name__ == "__main__":
    main()
