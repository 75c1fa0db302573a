"""How a bundle's runtime gets onto its device: the README's install section and the device check's set-up.

Each target has one or more install paths. The device README prints every path's commands; the device
check installs and runs the path marked `checked`, with the same requirement, so what the README says
is what was run. A path that cannot be run where bundles are built says so in the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgeqwen.backends import backend_for, runtime_version
from edgeqwen.plan import BuildPlan
from edgeqwen.targets import TargetProfile

VENV = ("python3 -m venv ~/qwen-env && . ~/qwen-env/bin/activate",)
JETSON_INDEX = "https://pypi.jetson-ai-lab.io/jp6/cu126"  # NVIDIA's Jetson AI Lab index for JetPack 6 / CUDA 12.6


@dataclass(frozen=True)
class InstallPath:
    name: str
    title: str
    commands: tuple[str, ...]
    requirement: Optional[str]  # the pip requirement the path installs (the check installs the same)
    run_device: Optional[str]  # the shim's --device after this install (None: the bundle's own)
    checked: bool  # the device check runs this path
    note: str = ""

    @property
    def run_command(self) -> str:
        device = f" --device {self.run_device}" if self.run_device else ""
        return f'python shim.py{device} "What is the with statement?"'


def checked_path(plan: BuildPlan, target: TargetProfile) -> InstallPath:
    return next(path for path in install_paths(plan, target) if path.checked)


def install_paths(plan: BuildPlan, target: TargetProfile) -> list[InstallPath]:
    backend = backend_for(plan.engine)
    requirement = backend.runtime_requirement(plan)
    cpu_requirement = backend.runtime_requirement(plan, device="cpu")
    pip = (f"pip install {requirement}",)
    if plan.device == "cuda":
        return [jetson_cpu_path(cpu_requirement), jetson_cuda_path(requirement)]
    if target.device_check.simulator == "qnn-htp":
        return qnn_paths(requirement, cpu_requirement)
    if target.hardware.os == "android":
        return [termux_path(requirement), android_app_path(requirement)]
    if target.hardware.cpu_arch == "arm64":
        return [InstallPath("linux", "Raspberry Pi OS (64-bit), or another arm64 Linux with glibc",
                            VENV + pip, requirement, None, True,
                            "PyPI has manylinux aarch64 wheels of the runtime; pip picks them on the device.")]
    # An NPU or GPU bundle is checked on the CPU device: no accelerator exists where bundles are built.
    run_device = None if plan.device == "cpu" else "cpu"
    return [InstallPath("linux", "64-bit Linux (x86-64)", VENV + pip, requirement, run_device, True),
            InstallPath("windows", "Windows (PowerShell)",
                        ("py -m venv $HOME\\qwen-env; & $HOME\\qwen-env\\Scripts\\Activate.ps1",) + pip,
                        requirement, run_device, False, "The same runtime from PyPI's Windows wheels.")]


def qnn_paths(requirement: str, cpu_requirement: str) -> list[InstallPath]:
    """A Snapdragon laptop (Windows on Arm) runs the bundle on its NPU; where bundles are built, the device check
    runs it on the Hexagon HTP simulator that onnxruntime-qnn's x86-64 Linux wheel carries."""
    windows_venv = ("py -m venv $HOME\\qwen-env; & $HOME\\qwen-env\\Scripts\\Activate.ps1",)
    return [
        InstallPath("windows-arm64", "Windows on Snapdragon (PowerShell), on the NPU",
                    windows_venv + (f"pip install {requirement}",), requirement, None, False,
                    "Not run here: no Snapdragon laptop where bundles are built. The QNN provider needs the "
                    "Qualcomm NPU driver that Windows on Snapdragon ships."),
        InstallPath("linux-simulator", "64-bit Linux (x86-64), on the Hexagon HTP simulator",
                    VENV + (f"pip install {requirement}",), requirement, "npu", True,
                    "onnxruntime-qnn's x86-64 Linux wheel carries libQnnHtp.so as a simulator of the HTP: "
                    "the same graphs and numerics as the NPU, far slower."),
        InstallPath("cpu", "Any 64-bit computer, on the CPU (the QDQ models in cpu/)",
                    VENV + (f"pip install {cpu_requirement}",), cpu_requirement, "cpu", False,
                    "The same QDQ numerics as on the simulator, uncompiled, on plain ONNX Runtime GenAI; the drift "
                    "gate measured them too (drift.json, `also_measured`)."),
    ]


def termux_path(requirement: str) -> InstallPath:
    return InstallPath(
        "termux-debian", "Android phone, in Termux with a Debian userland (proot-distro)",
        ("pkg install proot-distro", "proot-distro install debian", "proot-distro login debian",
         "apt update && apt install -y python3 python3-venv") + VENV + (f"pip install {requirement}",),
        requirement, None, True,
        "Termux itself uses Android's libc, on which PyPI's manylinux wheels do not install; a Debian "
        "userland under proot-distro is glibc, and the aarch64 wheel and the shim run there unchanged. "
        "Copy the bundle into the Debian userland (for example under /root) before running it.")


def android_app_path(requirement: str) -> InstallPath:
    genai = requirement.partition("==")[2]
    gradle = (f'// app/build.gradle.kts: implementation(files("libs/onnxruntime-genai-android-{genai}.aar"))',
              f'//                      implementation("com.microsoft.onnxruntime:onnxruntime-android:'
              f'{runtime_version("onnxruntime")}")')
    return InstallPath(
        "android-app", "Android app (Kotlin), ONNX Runtime GenAI's Android library",
        gradle + ANDROID_APP_EXAMPLE, None, None, False,
        "An app loads this same folder (genai_config.json, model.onnx, tokenizer) with ONNX Runtime "
        "GenAI's Java API. Microsoft publishes the library as an AAR (com.microsoft.onnxruntime:"
        "onnxruntime-genai-android) built from the onnxruntime-genai repository "
        "(tools/ci_build/github/android/build_aar_package.py); it needs onnxruntime-android beside it. "
        "The API calls below are those of onnxruntime-genai 0.14's Java sources "
        "(src/java/src/main/java/ai/onnxruntime/genai/).")


ANDROID_APP_EXAMPLE = (
    "import ai.onnxruntime.genai.*",
    "",
    "fun answer(bundleDir: String, question: String, onPiece: (String) -> Unit) {",
    "    Model(bundleDir).use { model ->",
    "        Tokenizer(model).use { tokenizer ->",
    '            val prompt = "<|im_start|>user\\n$question<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n"',
    "            tokenizer.encode(prompt).use { tokens ->",
    "                GeneratorParams(model).use { params ->",
    '                    params.setSearchOption("max_length", 1024.0)',
    "                    Generator(model, params).use { generator ->",
    "                        tokenizer.createStream().use { stream ->",
    "                            generator.appendTokenSequences(tokens)",
    "                            while (!generator.isDone()) {",
    "                                generator.generateNextToken()",
    "                                onPiece(stream.decode(generator.getLastTokenInSequence(0L)))",
    "                            }",
    "                        }",
    "                    }",
    "                }",
    "            }",
    "        }",
    "    }",
    "}",
)


def jetson_cpu_path(cpu_requirement: str) -> InstallPath:
    return InstallPath(
        "jetson-cpu", "Jetson, first run on the CPU (the runtime from PyPI)", VENV + (f"pip install {cpu_requirement}",),
        cpu_requirement, "cpu", True,
        "PyPI's aarch64 wheel of the runtime is the CPU build: it runs this bundle on the Orin's CPU "
        "cores (`--cpu`), a quick check that the bundle works before the CUDA runtime is in place.")


def jetson_cuda_path(requirement: str) -> InstallPath:
    package, _, version = requirement.partition("==")
    return InstallPath(
        "jetson-cuda", "Jetson, on the GPU (the CUDA runtime, built on the device)",
        VENV + (
            f"pip install onnxruntime-gpu --index-url {JETSON_INDEX}",
            f"git clone --branch rel-{version} --recursive https://github.com/microsoft/onnxruntime-genai",
            "cd onnxruntime-genai && mkdir -p ort/lib ort/include",
            "ORT_DIR=$(python -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))')",
            "ORT_VERSION=$(python -c 'import onnxruntime; print(onnxruntime.__version__)')",
            "cp $ORT_DIR/capi/libonnxruntime*.so* ort/lib/ && ln -sf libonnxruntime.so.$ORT_VERSION ort/lib/libonnxruntime.so",
            "for h in onnxruntime_c_api.h onnxruntime_float16.h; do curl -sL -o ort/include/$h "
            "https://raw.githubusercontent.com/microsoft/onnxruntime/rel-$ORT_VERSION/include/onnxruntime/core/session/$h; done",
            "./build.sh --use_cuda --cuda_home /usr/local/cuda --ort_home ./ort --config Release --update --build "
            "--parallel --skip_tests --cmake_extra_defines CMAKE_CUDA_ARCHITECTURES=87",
            f"pip install --no-deps $(find build -name '{package.replace('-', '_')}-*.whl')",
        ),
        requirement, None, False,
        f"PyPI has no aarch64 build of {package} (onnxruntime-genai issue 2283) nor of onnxruntime-gpu "
        "(onnxruntime issues 21232, 20503). NVIDIA's Jetson AI Lab index has onnxruntime-gpu for "
        "JetPack 6; onnxruntime-genai with CUDA is built on the Orin against it, as jetson-containers' "
        "packages/ml/onnxruntime_genai/build.sh does (sm_87 is the Orin's GPU; the build takes about an "
        "hour and wants swap on an 8 GB board).")
