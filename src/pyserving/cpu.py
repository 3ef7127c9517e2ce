"""Whether this CPU's int8 kernels take 8-bit weights, read from its instruction-set flags.

x86 int8 kernels without VNNI or AMX (ONNX Runtime's and OpenVINO's alike) add pairs of
u8×s8 products in 16 bits (`vpmaddubsw`), which saturates with 8-bit weights; VNNI and AMX
add them in 32 bits. An int8 export therefore writes 8-bit weights only for such a CPU, and
the server refuses 8-bit weights on a CPU that would saturate them. Other architectures'
int8 dot products widen before they add, so they take 8 bits.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

__all__ = ["INT8_DOT_FLAGS", "WEIGHT_BITS_HINT", "int8_dot_product", "int8_weight_bits"]

# /proc/cpuinfo flags of the x86 instructions that add u8×s8 products in 32 bits.
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
X86 = ("x86_64", "amd64", "i386", "i686", "x86")
WEIGHT_BITS_HINT = "8-bit int8 weights need VNNI or AMX (avx512_vnni, avx_vnni or amx_int8)"


@functools.cache
def _cpuinfo_flags() -> frozenset[str] | None:
    """The first `flags` line of /proc/cpuinfo, or None where there is none (not Linux x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def int8_dot_product() -> str | None:
    """The flag that makes 8-bit weights safe here ("avx512_vnni", or "arm64" off x86), else None.

    None on an x86 CPU without VNNI or AMX, and on x86 where the flags cannot be read.
    """
    if platform.machine().lower() not in X86:
        return platform.machine().lower() or "not x86"
    flags = _cpuinfo_flags() or frozenset()
    return next((flag for flag in INT8_DOT_FLAGS if flag in flags), None)


def int8_weight_bits() -> int:
    """8 where this CPU's int8 kernels add u8×s8 products without saturating, else 7."""
    return 8 if int8_dot_product() else 7
