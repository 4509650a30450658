"""neuroemu.alloc: glibc keeps freed large blocks, so a second array of the same size costs no page
faults; a user's own glibc thresholds are left alone."""

import os
import subprocess
import sys

import pytest

from neuroemu import alloc

PROBE = """
import resource, sys
import numpy as np
from neuroemu.alloc import keep_freed_memory
took = keep_freed_memory()
a = np.ones(20 << 20, np.float32); del a  # 80 MB, well above glibc's largest dynamic mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(20 << 20, np.float32); del a
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(env: dict[str, str]) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    took, faults = out.stdout.split()
    return took == "True", int(faults)


def _glibc() -> bool:
    return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"))


@pytest.mark.skipif(not _glibc(), reason="glibc's mallopt only")
def test_a_freed_large_block_is_reused_without_page_faults():
    took, faults = probe({})
    assert took
    assert faults < 16  # a fresh 80 MB block is 40 huge pages or 20 000 small ones, each a fault


@pytest.mark.skipif(not _glibc(), reason="glibc's mallopt only")
def test_glibcs_own_settings_are_left_alone():
    took, _ = probe({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert not took


@pytest.mark.skipif(_glibc(), reason="elsewhere than glibc")
def test_other_c_libraries_are_left_alone():
    assert alloc.keep_freed_memory() is False
