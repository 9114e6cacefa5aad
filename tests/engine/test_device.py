"""pipeline.engine.device: the hardware line a run's summary, log and tuning record carry."""

import pytest
import torch

from pipeline.engine.device import cpu_model, hardware_description


@pytest.mark.parametrize("threads, expected_suffix", [(1, ", 1 thread"), (2, ", 2 threads")])
def test_cpu_hardware_line_names_the_cpu_model_and_thread_count(threads, expected_suffix):
    """The CPU line names the model (it once said only 'x86_64', so runs on two CPUs looked alike) and counts
    threads in correct English."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        line = hardware_description(torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
    assert line == f"CPU: {cpu_model()}{expected_suffix}"


def test_cpu_model_matches_py_cpuinfo():
    """The brand string is the one py-cpuinfo (the reference reader) reports; on Linux medvp reads it from
    /proc/cpuinfo itself, because py-cpuinfo takes about a second."""
    import cpuinfo

    brand = cpuinfo.get_cpu_info().get("brand_raw", "")
    if not brand:
        pytest.skip("py-cpuinfo reports no brand string on this machine")
    assert cpu_model() == brand
