"""Device assignment of the local backend's workers, with explicit GPU counts (no GPU here)."""

from __future__ import annotations

import os

import pytest

from automl import UserError
from automl.backends.devices import assign_devices, cuda_count, parse_gpus, slots_per_gpu, threads_per_worker


def test_auto_uses_every_gpu_round_robin():
    assert assign_devices(4, "auto", None, available=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert assign_devices(2, "auto", None, available=4) == ["cuda:0", "cuda:1"]


def test_no_cuda_runs_on_cpu():
    assert assign_devices(3, "auto", None, available=0) == ["cpu"] * 3
    assert assign_devices(2, "none", None, available=2) == ["cpu", "cpu"]
    assert assign_devices(2, "auto", 0, available=2) == ["cpu", "cpu"]


def test_explicit_indices_pin_workers_in_order():
    assert assign_devices(3, "0,1,3", None, available=4) == ["cuda:0", "cuda:1", "cuda:3"]
    assert assign_devices(2, " 3 , 1 ", 1.0, available=4) == ["cuda:3", "cuda:1"]


def test_fractional_gpus_share_a_device_and_cap_workers():
    # 0.5 per trial: two workers per GPU, the GPUs filled evenly
    assert assign_devices(2, "auto", 0.5, available=1) == ["cuda:0", "cuda:0"]
    assert assign_devices(4, "auto", 0.5, available=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    # more workers than the GPUs hold: capped, so no trial waits on an oversubscribed GPU
    assert assign_devices(8, "auto", 0.5, available=2) == ["cuda:0", "cuda:1"] * 2
    assert assign_devices(5, "0", 0.25, available=2) == ["cuda:0"] * 4
    assert assign_devices(3, "auto", 1, available=2) == ["cuda:0", "cuda:1"]
    assert slots_per_gpu(0.3) == 3 and slots_per_gpu(1 / 3) == 3 and slots_per_gpu(None) is None


def test_every_gpu_gets_a_worker_before_any_gets_two():
    for gpus in range(1, 5):
        for workers in range(1, 9):
            devices = assign_devices(workers, "auto", None, available=gpus)
            load = [devices.count(f"cuda:{g}") for g in range(gpus)]
            assert max(load) - min(load) <= 1
            assert len(devices) == workers


@pytest.mark.parametrize("value, fragment", [
    ("abc", "bad --gpus"), ("0,x", "bad --gpus"), ("-1", "bad --gpus"), ("1,1", "repeated"),
    ("2", "names GPU 2"), ("", None),
])
def test_bad_gpus_values_are_user_errors(value, fragment):
    if fragment is None:
        assert parse_gpus(value, 2) == [0, 1]
        return
    with pytest.raises(UserError, match=fragment) as info:
        parse_gpus(value, 2)
    assert "\n" not in str(info.value)


def test_gpu_index_without_cuda_is_a_user_error():
    with pytest.raises(UserError, match="no CUDA GPU"):
        assign_devices(1, "0", None, available=0)


@pytest.mark.parametrize("value", [-0.5, 2.0, float("nan")])
def test_bad_gpus_per_trial(value):
    with pytest.raises(UserError):
        assign_devices(1, "auto", value, available=1)


def test_threads_divided_among_workers(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_worker(1, cores=8) == 8
    assert threads_per_worker(2, cores=8) == 4
    assert threads_per_worker(3, cores=8) == 2
    assert threads_per_worker(16, cores=8) == 1
    assert threads_per_worker(2) >= 1
    for value in ("", "0", "two"):  # unset, zero or not a number: ignored
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert threads_per_worker(2, cores=8) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice wins
    assert threads_per_worker(2, cores=8) == 1


def test_a_gpu_worker_sees_only_its_own_gpu(monkeypatch):
    from automl.backends.local import _own_gpu

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _own_gpu("cpu") == "cpu" and "CUDA_VISIBLE_DEVICES" not in os.environ
    assert _own_gpu("cuda:1") == "cuda:0"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")  # indices are relative to what is visible
    assert _own_gpu("cuda:2") == "cuda:0"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "7"


def test_evaluation_follows_the_gpus_option():
    from automl.backends.devices import main_device

    assert main_device("none") == "cpu"
    assert main_device("auto") == ("cuda:0" if cuda_count() else "cpu")
