"""The compiled simulated libwlmData.so against the vendor header's function list."""

from __future__ import annotations

import ctypes
import os
import subprocess

import pytest

from drivers.highfinesse import header
from drivers.highfinesse.wlm import FUNCTIONS, Wavemeter

SIM_SOURCES = header.PATH.parent / "sim"
ALLOWED = {ctypes.c_int32, ctypes.c_int64, ctypes.c_uint16, ctypes.c_double, ctypes.c_ubyte,
           ctypes.c_ssize_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int32),
           ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double),
           ctypes.POINTER(ctypes.c_char)}


def test_the_list_is_the_vendor_header():
    table = header.prototypes()
    assert len(table) == 171
    assert table["GetSwitcherSignalStates"].text == (
        "int32_t GetSwitcherSignalStates(int32_t Signal, int32_t* Use, int32_t* Show)")
    assert table["Operation"].argtypes == (ctypes.c_uint16,)
    assert table["GetExposureModeNum"].argtypes == (ctypes.c_int32, ctypes.c_ubyte)
    assert table["ClearWLMEvents"].restype is None and table["ClearWLMEvents"].argtypes == ()


def test_every_type_is_fixed_width():
    for proto in header.prototypes().values():
        for t in (*proto.argtypes, proto.restype):
            assert t is None or t in ALLOWED, proto.text
    assert ctypes.sizeof(ctypes.c_long) == 8  # what the driver must never use on 64-bit Linux


def test_the_driver_declares_32_bit_integers(wlm_library):
    with Wavemeter("wm", library=wlm_library) as wm:
        for name in FUNCTIONS:
            function = getattr(wm._lib, name)
            types = [*function.argtypes, function.restype]
            assert ctypes.c_long not in types, name
            assert function.argtypes == header.prototypes()[name].argtypes
            for t in types:
                if t in (ctypes.c_int32, ctypes.c_uint16, ctypes.c_ubyte):
                    assert ctypes.sizeof(t) in (4, 2, 1)
        assert [ctypes.sizeof(t) for t in wm._lib.GetExposureNum.argtypes] == [4, 4, 4]


def test_the_library_exports_every_header_function(wlm_library):
    lib = ctypes.CDLL(wlm_library)
    missing = [name for name in header.prototypes() if not hasattr(lib, name)]
    assert missing == []


def test_a_header_generated_binding_loads_it(wlm_library, wlm_sim):
    """Declare every function from the list, as the vendor's wlmData.py does, then use it."""
    dll = header.declare(ctypes.CDLL(wlm_library), header.prototypes())
    wlm_sim.advance(1.0)
    assert dll.GetWLMCount(0) == 1
    assert dll.GetFrequencyNum(1, 0.0) == pytest.approx(755.2227, abs=20e-6)
    assert dll.GetWavelength(0.0) * dll.GetFrequency(0.0) == pytest.approx(299792.458)
    assert dll.GetOperationState(0) == 2 and dll.GetChannelsCount(0) == 8
    use, show = ctypes.c_int32(-7), ctypes.c_int32(-7)
    assert dll.GetSwitcherSignalStates(3, ctypes.byref(use), ctypes.byref(show)) == 0
    assert (use.value, show.value) == (1, 1)
    assert dll.Instantiate(-1, 0, 0, 0) == 1  # cInstCheckForWLM
    # not simulated: "not available"
    assert dll.GetLinewidthNum(1, 0.0) == -6.0 and dll.GetTemperature(0.0) == -6.0
    assert dll.SetPulseMode(1) == -6 and dll.GetExposure(0) == 0 and dll.ClearWLMEvents() is None
    wlm_sim.set_server_running(False)
    assert dll.GetWLMCount(0) == 0 and dll.Instantiate(-1, 0, 0, 0) == 0
    assert dll.GetTemperature(0.0) == -5.0 and dll.SetPulseMode(1) == -1  # getter -5, setter -1
    assert dll.GetFrequencyNum(1, 0.0) == -5.0 and dll.SetExposureNum(1, 1, 20) == -1


def _compile_against(cc, tmp_path, lines):
    """Compile the simulation with the header's prototypes forced in front of it."""
    prototypes = tmp_path / "wlmData.h"
    prototypes.write_text("#include <stdint.h>\n" + "".join(
        line.replace("bool", "unsigned char") + ";\n" for line in lines))
    return subprocess.run(
        [cc, "-fsyntax-only", "-Wall", "-Wextra", "-include", str(prototypes),
         *map(str, sorted(SIM_SOURCES.glob("*.c")))],
        capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})


def test_every_signature_matches_the_header(cc, tmp_path):
    lines = [p.text for p in header.prototypes().values()]
    done = _compile_against(cc, tmp_path, lines)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    # the check does catch a wrong signature
    wrong = [line.replace("GetFrequencyNum(int32_t", "GetFrequencyNum(int64_t") for line in lines]
    done = _compile_against(cc, tmp_path, wrong)
    assert done.returncode != 0 and "conflicting types for 'GetFrequencyNum'" in done.stderr


def test_header_list_errors_name_the_line(tmp_path):
    bad = tmp_path / "list.txt"
    bad.write_text("# header\nint32_t GetWLMCount(int32_t V)\nlong GetThing(int32_t V)\n")
    with pytest.raises(ValueError, match=r"list.txt:3: unknown type 'long'"):
        header.prototypes(bad)
