"""Accelerators for a roofline: peak dense FLOP/s per dtype, memory bandwidth and memory
capacity, from the vendors' datasheets (each entry cites its source), or a device given by
its two numbers.

Capacities are the datasheets' "80GB", "141GB", ...: HBM and GDDR come in stacks and chips
of binary sizes, so those are GiB (2**30 bytes); what a program can allocate is somewhat
less (the driver and the CUDA context take a few hundred MiB).

Peaks are dense (no structured sparsity: where a datasheet lists only "with sparsity"
tensor figures, they are halved, as its footnote says). float32 is the non-tensor FP32
rate, which a matmul gets unless TF32 is allowed (``torch.backends.cuda.matmul.
allow_tf32``, off by default); "tf32" is listed for reference. (cuDNN convolutions in
float32 may run in TF32, ``torch.backends.cudnn.allow_tf32`` being on by default: their
bound at the FP32 rate is then not a lower bound.) float64 is the FP64
tensor (matrix) rate that a DGEMM gets; integer and float8 rates are tensor-core rates.
"""
from __future__ import annotations

from dataclasses import dataclass

TERA = 1e12


class DeviceError(ValueError):
    """An unknown device or a dtype its table has no peak for; one line, says which."""


@dataclass(frozen=True)
class DeviceSpec:
    """A device: ``peaks`` {dtype name: dense FLOP/s}, ``bandwidth`` bytes/s of its memory,
    ``memory`` its capacity in bytes (None: not known)."""

    name: str
    peaks: dict
    bandwidth: float
    source: str = ""
    memory: int | None = None

    def peak(self, dtype: str | None) -> float:
        """Peak FLOP/s for ``dtype`` ("bfloat16", ...; None: an op with no tensor input,
        at the float32 rate)."""
        key = dtype or "float32"
        found = self.peaks.get(key, self.peaks.get("*"))
        if found is None:
            raise DeviceError(f"{self.name} has no peak FLOP/s for {key} (it lists "
                              f"{', '.join(self.peaks)}); give --peak-tflops and "
                              "--bandwidth-gbs instead")
        return found

    def ridge(self, dtype: str | None) -> float:
        """The intensity (FLOPs per byte) where ``dtype``'s roof meets the bandwidth's."""
        return self.peak(dtype) / self.bandwidth


def custom(peak_tflops: float, bandwidth_gbs: float) -> DeviceSpec:
    """A device given by one peak (any dtype) and a memory bandwidth."""
    if not peak_tflops > 0 or not bandwidth_gbs > 0:
        raise DeviceError("--peak-tflops and --bandwidth-gbs take positive numbers")
    return DeviceSpec(f"{peak_tflops:g} TFLOP/s, {bandwidth_gbs:g} GB/s",
                      {"*": peak_tflops * TERA}, bandwidth_gbs * 1e9)


def _spec(name, bandwidth_tbs, source, memory_gb, **tflops):
    return DeviceSpec(name, {k: v * TERA for k, v in tflops.items()}, bandwidth_tbs * TERA,
                      source, memory_gb * 2**30)


_FP8 = ("float8_e4m3fn", "float8_e5m2")
_FP8_FNUZ = ("float8_e4m3fnuz", "float8_e5m2fnuz")


def _hopper(name, bandwidth_tbs, source, memory_gb):
    # Datasheet: FP64 34, FP64 Tensor 67, FP32 67; TF32 989, BF16/FP16 1,979, FP8 3,958,
    # INT8 3,958 "with sparsity" (footnote: one-half lower without).
    return _spec(name, bandwidth_tbs, source, memory_gb, float64=67, float32=67, tf32=494.5,
                 bfloat16=989.5, float16=989.5, int8=1979,
                 **dict.fromkeys(_FP8, 1979))


#: known accelerators by the name --device-spec takes
DEVICES = {
    "h100-sxm": _hopper("NVIDIA H100 SXM 80GB", 3.35,
                        "https://resources.nvidia.com/en-us-gpu-resources/h100-datasheet-24306", 80),
    "h200": _hopper("NVIDIA H200 SXM 141GB", 4.8,
                    "https://www.nvidia.com/en-us/data-center/h200/", 141),
    # A100 datasheet lists dense and sparse side by side ("312 | 624*"): dense figures.
    "a100-80gb": _spec("NVIDIA A100 80GB SXM", 2.039,
                       "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/"
                       "pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf", 80,
                       float64=19.5, float32=19.5, tf32=156, bfloat16=312, float16=312,
                       int8=624),
    # L4 datasheet: FP32 30.3; TF32 120, BF16/FP16 242, FP8/INT8 485 "with sparsity".
    "l4": _spec("NVIDIA L4", 0.3, "https://www.nvidia.com/en-us/data-center/l4/", 24,
                float32=30.3, tf32=60, bfloat16=121, float16=121, int8=242.5,
                **dict.fromkeys(_FP8, 242.5)),
    # MI300X: dense figures listed directly (sparsity on separate lines).
    "mi300x": _spec("AMD Instinct MI300X", 5.3,
                    "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html", 192,
                    float64=163.4, float32=163.4, tf32=653.7, bfloat16=1307.4,
                    float16=1307.4, int8=2614.9, **dict.fromkeys(_FP8_FNUZ, 2614.9)),
}


def device_spec(name: str) -> DeviceSpec:
    """The known device ``name`` (case-insensitive)."""
    found = DEVICES.get(name.lower())
    if found is None:
        raise DeviceError(f"unknown device {name!r}: known devices are {', '.join(DEVICES)}")
    return found
