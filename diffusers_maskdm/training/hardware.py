# Copyright 2026 The diffusers-maskdm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""What a CPU run can use: its cores, and bf16 where the processor computes it natively."""

import os
from pathlib import Path


# x86 (AVX512-BF16, AMX) and Arm (FEAT_BF16) flags of /proc/cpuinfo for native bf16 arithmetic.
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """
    Whether the processor computes bf16 natively. Without it, oneDNN emulates bf16 and autocast can be slower than
    fp32, so the training script falls back to fp32 there. `False` where `/proc/cpuinfo` cannot be read.
    """
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return False
    flags = set()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & NATIVE_BF16_FLAGS)


def cpu_threads_per_process(num_local_processes: int) -> int:
    """
    The intra-op threads each of `num_local_processes` processes on this machine gets: the CPUs this process may
    run on (its affinity, so `taskset` is honoured), shared evenly, at least one.

    `accelerate launch` sets `OMP_NUM_THREADS=1` for every process on a machine without a GPU unless told
    `--num_cpu_threads_per_process`, which leaves all but one core idle in a one-process run.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, num_local_processes))
