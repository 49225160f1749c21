"""SM partitions of one GPU through CUDA green contexts (driver API by ctypes: no cuda-python needed), each
with a stream torch can use. A kernel launched into such a stream runs on its partition's SMs only, so
groups trained in disjoint partitions cannot take each other's SMs.

    parts = partition(torch.device("cuda"), [16, 24, 32])   # -> [Part(sms=16, stream=...), ...]
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

SM = 1  # CU_DEV_RESOURCE_TYPE_SM
DEFAULT_STREAM = 0x1  # CU_GREEN_CTX_DEFAULT_STREAM: cuGreenCtxCreate requires it
NON_BLOCKING = 0x1  # CU_STREAM_NON_BLOCKING
IGNORE_COSCHEDULING = 0x1  # CU_DEV_SM_RESOURCE_SPLIT_IGNORE_SM_COSCHEDULING


class Resource(ctypes.Structure):
    """CUdevResource, 144 bytes from CUDA 12.4 to 13: its type, 92 bytes the driver keeps, a 40-byte union
    whose SM member starts with the SM count, and (CUDA 13) a pointer to a next resource."""
    _fields_ = [("type", ctypes.c_int), ("_internal", ctypes.c_ubyte * 92), ("sm_count", ctypes.c_uint),
                ("_union_rest", ctypes.c_ubyte * 36), ("_next", ctypes.c_void_p)]


assert ctypes.sizeof(Resource) == 144


@dataclass
class Part:
    sms: int
    stream: torch.cuda.ExternalStream
    context: int  # the CUgreenCtx, kept so that it lives as long as the part


def _driver():
    lib = ctypes.CDLL("libcuda.so.1")
    P = ctypes.POINTER
    sigs = {
        "cuDeviceGet": [P(ctypes.c_int), ctypes.c_int],
        "cuDeviceGetDevResource": [ctypes.c_int, P(Resource), ctypes.c_int],
        "cuDevSmResourceSplitByCount": [P(Resource), P(ctypes.c_uint), P(Resource), P(Resource), ctypes.c_uint,
                                        ctypes.c_uint],
        "cuDevResourceGenerateDesc": [P(ctypes.c_void_p), P(Resource), ctypes.c_uint],
        "cuGreenCtxCreate": [P(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_int, ctypes.c_uint],
        "cuGreenCtxStreamCreate": [P(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_uint, ctypes.c_int],
        "cuGetErrorName": [ctypes.c_int, P(ctypes.c_char_p)],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int
    return lib


def _check(lib, rc: int, what: str) -> None:
    if rc != 0:
        name = ctypes.c_char_p()
        lib.cuGetErrorName(rc, ctypes.byref(name))
        raise RuntimeError(f"{what}: {(name.value or b'?').decode()} ({rc})")


def partition(device: torch.device, counts: list[int], grain: int = 8, coschedule: bool = True) -> list[Part]:
    """Disjoint partitions of counts[i] SMs each (multiples of `grain`): the device split once into groups
    of `grain` SMs (the driver's own granularity rules), and each partition made of as many of them as it
    asks for."""
    torch.cuda.init()
    torch.zeros(1, device=device)  # the primary context exists
    lib = _driver()
    dev = ctypes.c_int()
    _check(lib, lib.cuDeviceGet(ctypes.byref(dev), device.index or 0), "cuDeviceGet")
    whole = Resource()
    _check(lib, lib.cuDeviceGetDevResource(dev, ctypes.byref(whole), SM), "cuDeviceGetDevResource")
    flags = 0 if coschedule else IGNORE_COSCHEDULING
    n, rest = ctypes.c_uint(0), Resource()
    _check(lib, lib.cuDevSmResourceSplitByCount(None, ctypes.byref(n), ctypes.byref(whole), ctypes.byref(rest),
                                                flags, grain), "count the groups")
    groups = (Resource * n.value)()
    _check(lib, lib.cuDevSmResourceSplitByCount(groups, ctypes.byref(n), ctypes.byref(whole), ctypes.byref(rest),
                                                flags, grain), f"split into groups of {grain} SMs")
    sizes = [groups[i].sm_count for i in range(n.value)]
    parts, used = [], 0
    for want in counts:
        take = max(1, -(-want // grain))
        if used + take > n.value:
            raise RuntimeError(f"asked {counts} SMs; the device splits into {sizes} (+{rest.sm_count} left)")
        chosen = (Resource * take)(*[groups[used + i] for i in range(take)])
        used += take
        desc, ctx, stream = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        _check(lib, lib.cuDevResourceGenerateDesc(ctypes.byref(desc), chosen, take), f"desc of {take} groups")
        _check(lib, lib.cuGreenCtxCreate(ctypes.byref(ctx), desc, dev, DEFAULT_STREAM), "cuGreenCtxCreate")
        _check(lib, lib.cuGreenCtxStreamCreate(ctypes.byref(stream), ctx, NON_BLOCKING, 0), "stream create")
        sms = sum(chosen[i].sm_count for i in range(take))
        parts.append(Part(sms, torch.cuda.ExternalStream(stream.value, device=device), ctx.value))
    return parts
