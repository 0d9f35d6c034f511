#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz corpora (fuzz/corpus/<target>/seed-*).
Run from the repository root; the fuzzer adds what it finds beside them."""
import os
import struct

OP = dict(LOOKUP=1, FORGET=2, GETATTR=3, SETATTR=4, READLINK=5, SYMLINK=6, MKNOD=8, MKDIR=9,
          UNLINK=10, RMDIR=11, RENAME=12, LINK=13, OPEN=14, READ=15, WRITE=16, STATFS=17,
          RELEASE=18, FSYNC=20, SETXATTR=21, GETXATTR=22, LISTXATTR=23, REMOVEXATTR=24,
          FLUSH=25, INIT=26, OPENDIR=27, READDIR=28, RELEASEDIR=29, ACCESS=34, CREATE=35,
          INTERRUPT=36, BATCH_FORGET=42, FALLOCATE=43, READDIRPLUS=44, RENAME2=45, LSEEK=46,
          COPY_FILE_RANGE=47)


def req(op, payload, nodeid=1, unique=2, uid=0):
    return struct.pack("=IIQQIIIHH", 40 + len(payload), op, unique, nodeid, uid, uid, 1, 0, 0) + payload


def write(target, name, data):
    d = os.path.join("fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# decode: one well-formed request of each shape.
read_in = struct.pack("=QQIIQII", 0, 0, 4096, 0, 0, 0, 0)
decode = {
    "lookup": req(OP["LOOKUP"], b"DCIM\0"),
    "init": req(OP["INIT"], struct.pack("=IIII", 7, 45, 131072, 0) + b"\0" * 48),
    "forget": req(OP["FORGET"], struct.pack("=Q", 1), nodeid=5),
    "batch_forget": req(OP["BATCH_FORGET"], struct.pack("=II", 2, 0) + struct.pack("=QQQQ", 5, 1, 6, 2)),
    "getattr": req(OP["GETATTR"], struct.pack("=IIQ", 1, 0, 7)),
    "setattr": req(OP["SETATTR"], struct.pack("=IIQQQQQQIIIIIIII", 8, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
    "symlink": req(OP["SYMLINK"], b"l\0target\0"),
    "mkdir": req(OP["MKDIR"], struct.pack("=II", 0o755, 0o22) + b"d\0"),
    "rename": req(OP["RENAME"], struct.pack("=Q", 1) + b"a\0b\0"),
    "rename2": req(OP["RENAME2"], struct.pack("=QII", 1, 2, 0) + b"a\0b\0"),
    "create": req(OP["CREATE"], struct.pack("=IIII", 0o100001, 0o644, 0o22, 0) + b"f.txt\0"),
    "read": req(OP["READ"], read_in, nodeid=3),
    "write": req(OP["WRITE"], struct.pack("=QQIIQII", 0, 0, 5, 0, 0, 0, 0) + b"hello", nodeid=3),
    "setxattr": req(OP["SETXATTR"], struct.pack("=IIII", 3, 0, 0, 0) + b"user.a\0abc"),
    "getxattr": req(OP["GETXATTR"], struct.pack("=II", 64, 0) + b"user.a\0"),
    "interrupt": req(OP["INTERRUPT"], struct.pack("=Q", 2)),
    "copy": req(OP["COPY_FILE_RANGE"], struct.pack("=QQQQQQQ", 0, 0, 3, 0, 0, 10, 0)),
    "unknown": req(200, b"xyz"),
    "ext": struct.pack("=IIQQIIIHH", 56, OP["LOOKUP"], 2, 1, 0, 0, 1, 1, 0) + b"DCIM\0\0\0\0" + b"\0" * 8,
    "short": b"\x28\0\0\0\x01\0\0\0",
}
for k, v in decode.items():
    write("decode", k, v)


# dispatch programs: steps of (op index, ctl, pick, len, payload).
OPS = ["LOOKUP", "FORGET", "GETATTR", "SETATTR", "READLINK", "SYMLINK", "MKNOD", "MKDIR", "UNLINK",
       "RMDIR", "RENAME", "LINK", "OPEN", "READ", "WRITE", "STATFS", "RELEASE", "FSYNC", "SETXATTR",
       "GETXATTR", "LISTXATTR", "REMOVEXATTR", "FLUSH", "OPENDIR", "READDIR", "RELEASEDIR",
       "FSYNCDIR", "ACCESS", "CREATE", "INTERRUPT", "BATCH_FORGET", "FALLOCATE", "READDIRPLUS",
       "RENAME2", "LSEEK", "COPY_FILE_RANGE", "DESTROY", "INIT", "NOTIFY_REPLY", "GETLK", "IOCTL",
       "STORM"]
ROOT, KNOWN, UNKNOWN = 0x20, 0x00, 0x40


def step(op, payload=b"", node=KNOWN, pick=0, uid=0, fh=False, extra=0):
    ctl = node | uid | (0x10 if fh else 0) | extra
    return bytes([OPS.index(op), ctl, pick, len(payload)]) + payload


# (the harness's known nodes start as [root]; each successful entry reply appends one)
walk = (step("LOOKUP", b"DCIM\0", node=ROOT) + step("LOOKUP", b"Camera\0", pick=1)
        + step("LOOKUP", b"IMG_1.jpg\0", pick=2) + step("GETATTR", struct.pack("=IIQ", 0, 0, 0), pick=3)
        + step("OPEN", struct.pack("=II", 0, 0), pick=3, uid=1)
        + step("READ", read_in, pick=3, uid=1, fh=True)
        + step("RELEASE", struct.pack("=QIIQ", 0, 0, 0, 0), pick=3, fh=True))
write("dispatch", "walk_read", walk)
new_file = (step("LOOKUP", b"Download\0", node=ROOT)
            + step("CREATE", struct.pack("=IIII", 0o100002, 0o644, 0o22, 0) + b"new.txt\0", pick=1, uid=2)
            + step("WRITE", struct.pack("=QQIIQII", 0, 0, 5, 0, 0, 0, 0) + b"hello", pick=2, uid=2, fh=True)
            + step("FSYNC", struct.pack("=QII", 0, 0, 0), pick=2, uid=2, fh=True)
            + step("SETATTR", struct.pack("=IIQQQQQQIIIIIIII", 8, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), pick=2, uid=2)
            + step("RENAME", struct.pack("=Q", 1) + b"new.txt\0moved.txt\0", node=KNOWN, pick=1, uid=2)
            + step("UNLINK", b"moved.txt\0", pick=1, uid=2))
write("dispatch", "create_write", new_file)
storm = (step("LOOKUP", b"DCIM\0", node=ROOT) + step("LOOKUP", b"Music\0", node=ROOT)
         + step("LOOKUP", b"Camera\0", pick=1) + step("STORM", struct.pack("=Q", 1))
         + step("GETATTR", struct.pack("=IIQ", 0, 0, 0), pick=3)
         + step("LOOKUP", b"Camera\0", pick=1) + step("STORM", struct.pack("=Q", 2**64 - 1))
         + step("FORGET", struct.pack("=Q", 5), pick=2) + step("LOOKUP", b"x\0", pick=2))
write("dispatch", "forget_storm", storm)
dirs = (step("MKDIR", struct.pack("=II", 0o755, 0o22) + b"Documents\0", node=ROOT, uid=1)
        + step("OPENDIR", struct.pack("=II", 0, 0), node=ROOT, uid=1)
        + step("READDIRPLUS", read_in, node=ROOT, uid=1, fh=True)
        + step("READDIR", read_in, node=ROOT, uid=3, fh=True)
        + step("INTERRUPT", struct.pack("=Q", 0))
        + step("RELEASEDIR", struct.pack("=QIIQ", 0, 0, 0, 0), node=ROOT, fh=True)
        + step("LOOKUP", b"escape\0", node=ROOT) + step("READLINK", pick=1)
        + step("SYMLINK", b"s\0../../outside\0", node=ROOT)
        + step("GETATTR", struct.pack("=IIQ", 0, 0, 0), node=UNKNOWN, pick=9)
        + step("LOOKUP", b"a\0", extra=0x04, pick=3) + step("LOOKUP", b"a\0", extra=0x0c, pick=20))
write("dispatch", "dirs_interrupt_unknown", dirs)

policy = {
    "full": open("scripts/demo.sh").read().split("<<'EOF'")[1].split("EOF")[0] if "<<'EOF'" in open("scripts/demo.sh").read() else "",
    "basic": '[[app]]\nuid = 10057\npackages = ["com.example.camera"]\npermissions = ["read_images", "read_video"]\n\n[[grant]]\nuid = 10058\npath = "DCIM/Camera/IMG_0001.jpg"\naccess = "read"\n',
    "all_perms": '[[app]]\nuid = 10100\npackages = ["a.b", "c.d"]\npermissions = ["read_images","read_video","read_audio","access_media_location","write_media","manage_external_storage","legacy_storage"]\n',
    "dup_uid": '[[app]]\nuid = 10057\npackages = ["a.b"]\n[[app]]\nuid = 10057\npackages = ["c.d"]\n',
    "bad_path": '[[grant]]\nuid = 10058\npath = "../etc/passwd"\naccess = "write"\n',
    "dup_grant": '[[grant]]\nuid = 10058\npath = "a/b"\naccess = "read"\n[[grant]]\nuid = 10058\npath = "A//b/"\naccess = "write"\n',
    "unknown_key": '[[app]]\nuid = 10057\npackages = []\ncolor = "red"\n',
    "empty": "",
}
for k, v in policy.items():
    if v:
        write("policy_config", k, v.encode())
